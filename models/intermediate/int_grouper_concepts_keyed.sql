{{ config(
    indexes=[{'columns': ['valueset_id']}],
) }}
{#-
    Every distinct code of every current grouper, keyed by the ValueSet's valueset_id (an
    integer: grouping and joining hundreds of thousands of codes by URL strings is slow), its
    system keyed by the code_systems seed: the short name when the system URL or
    `urn:oid:<oid>` is known, else the system URL. Text is collated "C" (bytewise).
    listed_display: the display this ValueSet gives the code (trimmed; of several, the first
    bytewise; null when it gives none): int_code_displays picks one per code from these.
-#}
with

concepts as (

    select
        valueset_id,
        system_url,
        code,
        display
    from {{ ref('int_valueset_concepts') }}

),

code_systems as (

    select
        system_url,
        short_name,
        'urn:oid:' || oid as oid_url
    from {{ ref('code_systems') }}

),

keyed as (

    select
        concepts.valueset_id,
        concepts.system_url,
        coalesce(by_url.short_name, by_oid.short_name, concepts.system_url) collate "C" as system_key,
        concepts.code collate "C" as code,
        nullif(trim(concepts.display), '') collate "C" as display
    from concepts
    left join code_systems as by_url
        on concepts.system_url = by_url.system_url
    left join code_systems as by_oid
        on concepts.system_url = by_oid.oid_url

)

select
    valueset_id,
    system_key,
    code,
    min(system_url) as system_url,
    min(display) as listed_display
from keyed
group by valueset_id, system_key, code
