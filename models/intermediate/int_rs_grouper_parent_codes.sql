{{ config(
    indexes=[{'columns': ['child_grouper_url', 'child_grouper_version'], 'unique': true}],
) }}
{#-
    The base of every cache row, computed once per RS grouper rather than once per
    configuration: for each RS grouper referenced by at least one loaded condition grouper,
    its parents and the distinct union of all their codes (several parents: all of them), as
    all codes, per system, and by system. base_sha256 is the SHA-256 of base_codes_by_system;
    base_pair_count and base_pair_hash_sum fingerprint the (system, code) pairs (see
    macros/code_fingerprint.sql); base_source_sha256 changes whenever anything a cache row takes
    from its base does (the parents or their codes).
    Nearly every RS grouper has exactly one parent, whose aggregated row is its base; only those
    with several parents aggregate the codes of all their parents' code children (RS groupers,
    and additional context groupers with the var include_additional_context_codes).
    base_code_system_sets: the base as the Refiner's code_system_sets (with displays);
    base_source_sha256 also covers them and the var.
-#}
with

rs_children as (

    select distinct
        parent_valueset_id,
        parent_grouper_url,
        parent_grouper_version,
        child_valueset_id,
        child_grouper_url,
        child_grouper_version
    from {{ ref('int_grouper_references_resolved') }}
    where is_resolved and child_type = 'reporting_spec_grouper'

),

code_children as (

    select distinct
        parent_valueset_id,
        child_valueset_id
    from {{ ref('int_grouper_references_resolved') }}
    where is_resolved and child_type in {{ code_child_types() }}

),

parents as (

    select
        child_valueset_id,
        child_grouper_url,
        child_grouper_version,
        count(*) as parent_count,
        min(parent_valueset_id) as first_parent_valueset_id,
        jsonb_agg(
            jsonb_build_object('url', parent_grouper_url, 'version', parent_grouper_version)
            order by parent_grouper_url collate "C", parent_grouper_version collate "C"
        ) as parent_groupers
    from rs_children
    group by child_valueset_id, child_grouper_url, child_grouper_version

),

single_parent_bases as (

    select
        parents.child_valueset_id,
        parent_codes.all_codes as base_codes,
        {%- for short_name in array_code_systems().strip().split(',') %}
            parent_codes.{{ short_name }}_codes as base_{{ short_name }}_codes,
        {%- endfor %}
        parent_codes.codes_by_system as base_codes_by_system,
        parent_codes.pair_count as base_pair_count,
        parent_codes.pair_hash_sum as base_pair_hash_sum,
        parent_codes.content_sha256 as base_sha256,
        parent_codes.code_system_sets as base_code_system_sets
    from parents
    inner join {{ ref('int_condition_grouper_codes_aggregated') }} as parent_codes
        on parents.first_parent_valueset_id = parent_codes.valueset_id
    where parents.parent_count = 1

),

several_parents_concepts as (

    select distinct
        rs_children.child_valueset_id,
        parent_concepts.system_key,
        parent_concepts.code
    from parents
    inner join rs_children
        on parents.child_valueset_id = rs_children.child_valueset_id
    inner join code_children as siblings
        on rs_children.parent_valueset_id = siblings.parent_valueset_id
    inner join {{ ref('int_grouper_concepts_keyed') }} as parent_concepts
        on siblings.child_valueset_id = parent_concepts.valueset_id
    where parents.parent_count > 1

),

several_parents_per_system as (

    {{ aggregate_codes('several_parents_concepts', ['child_valueset_id']) }}

),

several_parents_all_codes as (

    {{ aggregate_all_codes('several_parents_concepts', ['child_valueset_id']) }}

),

several_parents_fingerprints as (

    {{ aggregate_code_fingerprints('several_parents_concepts', ['child_valueset_id'], prefix='base_') }}

),

several_parents_code_sets as (

    {{ aggregate_code_system_sets('several_parents_concepts', ['child_valueset_id']) }}

),

several_parents_bases as (

    select
        several_parents_per_system.child_valueset_id,
        several_parents_all_codes.all_codes as base_codes,
        {%- for short_name in array_code_systems().strip().split(',') %}
            several_parents_per_system.{{ short_name }}_codes as base_{{ short_name }}_codes,
        {%- endfor %}
        several_parents_per_system.codes_by_system as base_codes_by_system,
        several_parents_fingerprints.base_pair_count,
        several_parents_fingerprints.base_pair_hash_sum,
        {{ sha256_text('several_parents_per_system.codes_by_system::text') }} as base_sha256,
        several_parents_code_sets.code_system_sets as base_code_system_sets
    from several_parents_per_system
    inner join several_parents_all_codes
        on several_parents_per_system.child_valueset_id = several_parents_all_codes.child_valueset_id
    inner join several_parents_fingerprints
        on several_parents_per_system.child_valueset_id = several_parents_fingerprints.child_valueset_id
    inner join several_parents_code_sets
        on several_parents_per_system.child_valueset_id = several_parents_code_sets.child_valueset_id

),

bases as (

    select * from single_parent_bases
    union all
    select * from several_parents_bases

),

combined as (

    select
        parents.child_valueset_id,
        parents.child_grouper_url,
        parents.child_grouper_version,
        parents.parent_count,
        parents.parent_groupers,
        coalesce(bases.base_codes, '{}')::text[] as base_codes,
        {%- for short_name in array_code_systems().strip().split(',') %}
            coalesce(bases.base_{{ short_name }}_codes, '{}')::text[] as base_{{ short_name }}_codes,
        {%- endfor %}
        coalesce(bases.base_codes_by_system, '{}'::jsonb) as base_codes_by_system,
        coalesce(bases.base_pair_count, 0) as base_pair_count,
        coalesce(bases.base_pair_hash_sum, 0) as base_pair_hash_sum,
        coalesce(bases.base_sha256, {{ sha256_text("'{}'") }}) as base_sha256,
        coalesce(bases.base_code_system_sets, {{ empty_code_system_sets() }}) as base_code_system_sets
    from parents
    left join bases
        on parents.child_valueset_id = bases.child_valueset_id

)

select
    *,
    {{ sha256_text(
        "child_grouper_url || chr(31) || child_grouper_version || chr(31) || parent_groupers::text"
        ~ " || chr(31) || base_sha256 || chr(31) || " ~ additional_context_codes_flag()
        ~ " || chr(31) || " ~ sha256_text('base_code_system_sets::text')
    ) }} as base_source_sha256
from combined
