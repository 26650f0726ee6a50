{{ config(
    indexes=[{'columns': ['system_key', 'code'], 'unique': true}],
) }}
{#-
    One row per distinct (system_key, code) of every current grouper: the display TES publishes
    for it and where it goes in the Refiner's code_system_sets.
    display: trimmed, '' when no ValueSet gives one; when ValueSets disagree, the display of the
    most recently loaded ValueSet version that gives one (highest last_seen_load_id, then the
    highest valueset_id), then the first bytewise.
    set_key: the code_system_sets key (loinc, snomed, rxnorm, icd10, cvx, else other);
    set_system: that key's OID for the five, else the code system's own OID when the
    code_systems seed knows it or the system is named urn:oid:<oid>, else its URL.
-#}
{%- set set_keys = "'" ~ code_system_set_keys() | join("', '") ~ "'" %}
with

concepts as (

    select
        valueset_id,
        system_key,
        code,
        system_url,
        listed_display
    from {{ ref('int_grouper_concepts_keyed') }}

),

valuesets as (

    select
        valueset_id,
        load_id as last_seen_load_id
    from {{ ref('stg_tes__valuesets') }}

),

code_systems as (

    select
        short_name,
        oid
    from {{ ref('code_systems') }}

),

codes as (

    select
        system_key,
        code,
        min(system_url collate "C") as system_url
    from concepts
    group by system_key, code

),

latest_displays as (

    select distinct on (concepts.system_key, concepts.code)
        concepts.system_key,
        concepts.code,
        concepts.listed_display as display
    from concepts
    inner join valuesets
        on concepts.valueset_id = valuesets.valueset_id
    where concepts.listed_display is not null
    order by
        concepts.system_key asc,
        concepts.code asc,
        valuesets.last_seen_load_id desc,
        concepts.valueset_id desc,
        concepts.listed_display asc

)

select
    codes.system_key,
    codes.code,
    codes.system_url,
    coalesce(latest_displays.display, '') as display,
    case
        when codes.system_key in ({{ set_keys }}) then codes.system_key
        else 'other'
    end as set_key,
    coalesce(
        code_systems.oid,
        case when codes.system_key like 'urn:oid:%' then substr(codes.system_key, 9) end,
        codes.system_key
    ) as set_system
from codes
left join latest_displays
    on
        codes.system_key = latest_displays.system_key
        and codes.code = latest_displays.code
left join code_systems
    on codes.system_key = code_systems.short_name
