{#-
    One row per compose.include[] entry of a current ValueSet: the code system it names and its
    two lists, concept[] (codes) and valueSet[] (references to other ValueSets), each an array
    (empty when absent or not an array). int_valueset_concepts and int_valueset_references unnest them.
-#}
with

valuesets as (

    select
        valueset_id,
        canonical_url,
        version,
        grouper_type,
        resource
    from {{ ref('stg_tes__valuesets') }}

),

includes as (

    select
        valuesets.valueset_id,
        valuesets.canonical_url,
        valuesets.version,
        valuesets.grouper_type,
        listed.include_position,
        listed.include_item
    from valuesets
    cross join lateral jsonb_array_elements(
        {{ jsonb_array_or_empty("valuesets.resource -> 'compose' -> 'include'") }}
    ) with ordinality as listed (include_item, include_position)

)

select
    valueset_id,
    canonical_url,
    version,
    grouper_type,
    include_position,
    include_item ->> 'system' as system_url,
    include_item ->> 'version' as system_version,
    {{ jsonb_array_or_empty("include_item -> 'concept'") }} as concept_items,
    {{ jsonb_array_or_empty("include_item -> 'valueSet'") }} as valueset_references
from includes
