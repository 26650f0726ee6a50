{{ config(
    pre_hook=['{{ tune_session() }}'],
    materialized='table',
    post_hook=['{{ analyze_relation() }}'],
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

parents as (

    select
        child_valueset_id,
        child_grouper_url,
        child_grouper_version,
        count(*) as parent_count,
        jsonb_agg(
            jsonb_build_object('url', parent_grouper_url, 'version', parent_grouper_version)
            order by parent_grouper_url collate "C", parent_grouper_version collate "C"
        ) as parent_groupers
    from rs_children
    group by child_valueset_id, child_grouper_url, child_grouper_version

),

concepts as (

    select distinct
        rs_children.child_valueset_id,
        parent_concepts.system_key,
        parent_concepts.code
    from rs_children
    inner join rs_children as siblings
        on rs_children.parent_valueset_id = siblings.parent_valueset_id
    inner join {{ ref('int_grouper_concepts_keyed') }} as parent_concepts
        on siblings.child_valueset_id = parent_concepts.valueset_id

),

per_child as (

    {{ aggregate_codes('concepts', ['child_valueset_id']) }}

),

all_codes as (

    {{ aggregate_all_codes('concepts', ['child_valueset_id']) }}

),

fingerprints as (

    select
        child_valueset_id,
        count(*) as base_pair_count,
        sum({{ code_pair_hash('system_key', 'code') }}) as base_pair_hash_sum
    from concepts
    group by child_valueset_id

),

combined as (

    select
        parents.child_valueset_id,
        parents.child_grouper_url,
        parents.child_grouper_version,
        parents.parent_count,
        parents.parent_groupers,
        coalesce(all_codes.all_codes, '{}')::text[] as base_codes,
        {%- for short_name in array_code_systems().strip().split(',') %}
            coalesce(per_child.{{ short_name }}_codes, '{}')::text[] as base_{{ short_name }}_codes,
        {%- endfor %}
        coalesce(per_child.codes_by_system, '{}'::jsonb) as base_codes_by_system,
        coalesce(fingerprints.base_pair_count, 0) as base_pair_count,
        coalesce(fingerprints.base_pair_hash_sum, 0) as base_pair_hash_sum
    from parents
    left join per_child
        on parents.child_valueset_id = per_child.child_valueset_id
    left join all_codes
        on parents.child_valueset_id = all_codes.child_valueset_id
    left join fingerprints
        on parents.child_valueset_id = fingerprints.child_valueset_id

),

hashed as (

    select
        *,
        {{ sha256_text('base_codes_by_system::text') }} as base_sha256
    from combined

)

select
    *,
    {{ sha256_text(
        "child_grouper_url || chr(31) || child_grouper_version || chr(31) || parent_groupers::text"
        ~ " || chr(31) || base_sha256"
    ) }} as base_source_sha256
from hashed
