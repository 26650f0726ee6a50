{#-
    One row per compose.include[] entry of a current ValueSet: the code system it names and its
    two lists, concept[] (codes) and valueSet[] (references to other ValueSets), each an array
    (empty when absent or not an array). stg_tes__concepts and stg_tes__references unnest them.
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
        case
            when jsonb_typeof(valuesets.resource -> 'compose' -> 'include') = 'array'
                then valuesets.resource -> 'compose' -> 'include'
            else '[]'::jsonb
        end
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
    case
        when jsonb_typeof(include_item -> 'concept') = 'array'
            then include_item -> 'concept'
        else '[]'::jsonb
    end as concept_items,
    case
        when jsonb_typeof(include_item -> 'valueSet') = 'array'
            then include_item -> 'valueSet'
        else '[]'::jsonb
    end as valueset_references
from includes
