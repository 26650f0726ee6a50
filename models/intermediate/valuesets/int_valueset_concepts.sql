{#-
    One row per code listed by a current ValueSet: every compose.include[].concept[] of every
    system, plus expansion.contains (nested contains flattened) when the ValueSet carries an
    expansion. Not distinct: the same code may be listed in both places.
-#}
with recursive

valuesets as (

    select
        valueset_id,
        canonical_url,
        version,
        grouper_type,
        resource
    from {{ ref('stg_tes__valuesets') }}

),

compose_includes as (

    select
        valueset_id,
        canonical_url,
        version,
        grouper_type,
        system_url,
        system_version,
        concept_items
    from {{ ref('int_valueset_compose_includes') }}

),

compose_concepts as (

    select
        compose_includes.valueset_id,
        compose_includes.canonical_url,
        compose_includes.version,
        compose_includes.grouper_type,
        compose_includes.system_url,
        compose_includes.system_version,
        concepts.concept_item ->> 'code' as code,
        concepts.concept_item ->> 'display' as display,
        'compose'::text as listed_in
    from compose_includes
    cross join lateral jsonb_array_elements(compose_includes.concept_items) as concepts (concept_item)

),

expansion_items as (

    select
        valuesets.valueset_id,
        valuesets.canonical_url,
        valuesets.version,
        valuesets.grouper_type,
        contains_items.item
    from valuesets
    cross join lateral jsonb_array_elements(valuesets.resource -> 'expansion' -> 'contains') as contains_items (item)
    where jsonb_typeof(valuesets.resource -> 'expansion' -> 'contains') = 'array'

    union all

    select
        expansion_items.valueset_id,
        expansion_items.canonical_url,
        expansion_items.version,
        expansion_items.grouper_type,
        nested_items.item
    from expansion_items
    cross join lateral jsonb_array_elements(expansion_items.item -> 'contains') as nested_items (item)
    where jsonb_typeof(expansion_items.item -> 'contains') = 'array'

),

expansion_concepts as (

    select
        valueset_id,
        canonical_url,
        version,
        grouper_type,
        item ->> 'system' as system_url,
        item ->> 'version' as system_version,
        item ->> 'code' as code,
        item ->> 'display' as display,
        'expansion'::text as listed_in
    from expansion_items

),

all_concepts as (

    select * from compose_concepts
    union all
    select * from expansion_concepts

)

select
    valueset_id,
    canonical_url,
    version,
    grouper_type,
    system_version,
    code,
    display,
    listed_in,
    coalesce(nullif(system_url, ''), 'urn:unknown-system') as system_url
from all_concepts
where nullif(code, '') is not null
