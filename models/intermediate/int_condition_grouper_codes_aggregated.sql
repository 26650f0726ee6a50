{{ config(
    pre_hook=['{{ tune_session() }}'],
    materialized='table',
    post_hook=['{{ analyze_relation() }}'],
    indexes=[{'columns': ['valueset_id'], 'unique': true}],
) }}
{#-
    Every current condition grouper with its codes: the distinct union of the codes of the RS
    groupers it references that are loaded (condition groupers list no codes themselves).
    A condition grouper none of whose RS groupers is loaded has empty arrays.
-#}
with

condition_groupers as (

    select valueset_id
    from {{ ref('stg_tes__valuesets') }}
    where grouper_type = 'condition_grouper'

),

rs_children as (

    select distinct
        parent_valueset_id,
        child_valueset_id
    from {{ ref('int_grouper_references_resolved') }}
    where is_resolved and child_type = 'reporting_spec_grouper'

),

concepts as (

    select distinct
        rs_children.parent_valueset_id as valueset_id,
        child_concepts.system_key,
        child_concepts.code
    from rs_children
    inner join {{ ref('int_grouper_concepts_keyed') }} as child_concepts
        on rs_children.child_valueset_id = child_concepts.valueset_id

),

per_grouper as (

    {{ aggregate_codes('concepts', ['valueset_id']) }}

),

all_codes as (

    {{ aggregate_all_codes('concepts', ['valueset_id']) }}

),

combined as (

    select
        condition_groupers.valueset_id,
        {%- for short_name in array_code_systems().strip().split(',') %}
            coalesce(per_grouper.{{ short_name }}_codes, '{}')::text[] as {{ short_name }}_codes,
        {%- endfor %}
        coalesce(all_codes.all_codes, '{}')::text[] as all_codes,
        coalesce(per_grouper.codes_by_system, '{}'::jsonb) as codes_by_system
    from condition_groupers
    left join per_grouper
        on condition_groupers.valueset_id = per_grouper.valueset_id
    left join all_codes
        on condition_groupers.valueset_id = all_codes.valueset_id

)

select
    *,
    {{ sha256_text('codes_by_system::text') }} as content_sha256
from combined
