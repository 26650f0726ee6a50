{{ config(
    indexes=[{'columns': ['valueset_id'], 'unique': true}],
) }}
{#-
    Every current condition grouper with its codes: the distinct union of the codes of the RS
    groupers it references that are loaded (condition groupers list no codes themselves).
    Nearly every condition grouper has exactly one loaded RS grouper, whose aggregated row it
    copies (the union of one set is that set); only those with several aggregate their children's
    codes. A condition grouper none of whose RS groupers is loaded has empty arrays.
    With the var include_additional_context_codes, the additional context groupers it references
    count as children too (macro code_child_types).
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
    where is_resolved and child_type in {{ code_child_types() }}

),

rs_children_counted as (

    select
        parent_valueset_id,
        child_valueset_id,
        count(*) over (partition by parent_valueset_id) as rs_child_count
    from rs_children

),

single_child_codes as (

    select
        rs_children_counted.parent_valueset_id as valueset_id,
        {%- for short_name in array_code_systems().strip().split(',') %}
            child_codes.{{ short_name }}_codes,
        {%- endfor %}
        child_codes.all_codes,
        child_codes.codes_by_system,
        child_codes.content_sha256,
        child_codes.pair_count,
        child_codes.pair_hash_sum,
        child_codes.code_system_sets
    from rs_children_counted
    inner join {{ ref('int_valueset_codes_aggregated') }} as child_codes
        on rs_children_counted.child_valueset_id = child_codes.valueset_id
    where rs_children_counted.rs_child_count = 1

),

several_children_concepts as (

    select distinct
        rs_children_counted.parent_valueset_id as valueset_id,
        child_concepts.system_key,
        child_concepts.code
    from rs_children_counted
    inner join {{ ref('int_grouper_concepts_keyed') }} as child_concepts
        on rs_children_counted.child_valueset_id = child_concepts.valueset_id
    where rs_children_counted.rs_child_count > 1

),

several_children_per_system as (

    {{ aggregate_codes('several_children_concepts', ['valueset_id']) }}

),

several_children_all_codes as (

    {{ aggregate_all_codes('several_children_concepts', ['valueset_id']) }}

),

several_children_fingerprints as (

    {{ aggregate_code_fingerprints('several_children_concepts', ['valueset_id']) }}

),

several_children_code_sets as (

    {{ aggregate_code_system_sets('several_children_concepts', ['valueset_id']) }}

),

several_children_codes as (

    select
        several_children_per_system.valueset_id,
        {%- for short_name in array_code_systems().strip().split(',') %}
            several_children_per_system.{{ short_name }}_codes,
        {%- endfor %}
        several_children_all_codes.all_codes,
        several_children_per_system.codes_by_system,
        {{ sha256_text('several_children_per_system.codes_by_system::text') }} as content_sha256,
        several_children_fingerprints.pair_count,
        several_children_fingerprints.pair_hash_sum,
        several_children_code_sets.code_system_sets
    from several_children_per_system
    inner join several_children_all_codes
        on several_children_per_system.valueset_id = several_children_all_codes.valueset_id
    inner join several_children_fingerprints
        on several_children_per_system.valueset_id = several_children_fingerprints.valueset_id
    inner join several_children_code_sets
        on several_children_per_system.valueset_id = several_children_code_sets.valueset_id

),

grouper_codes as (

    select * from single_child_codes
    union all
    select * from several_children_codes

)

select
    condition_groupers.valueset_id,
    {{ grouper_code_columns('grouper_codes') }},
    coalesce(grouper_codes.pair_count, 0) as pair_count,
    coalesce(grouper_codes.pair_hash_sum, 0) as pair_hash_sum,
    coalesce(grouper_codes.code_system_sets, {{ empty_code_system_sets() }}) as code_system_sets
from condition_groupers
left join grouper_codes
    on condition_groupers.valueset_id = grouper_codes.valueset_id
