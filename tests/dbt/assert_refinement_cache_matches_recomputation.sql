-- Recompute every cache row from the serving tables with a different formulation (the parents'
-- codes by system via the references, set differences for the additions; no precomputed bases,
-- no binary-search merges) and compare sets by fingerprint: per (key, system) and for
-- aggregated_codes, the number of codes and the sum of their 64-bit hashes. Equal fingerprints
-- mean equal multisets (short of a 64-bit hash-sum collision), so a missing, extra, changed or
-- repeated code shows up. Comparing fingerprints instead of (key, system, code) tuples (millions
-- at production scale) keeps the recomputation linear: no sort of every tuple.
-- Also reports rows whose content_sha256 disagrees with their own codes_by_system's fingerprint.
with

counted as (

    select
        snomed_code,
        jurisdiction_id,
        child_grouper_url,
        child_grouper_version,
        loinc_codes,
        snomed_codes,
        icd10_codes,
        rxnorm_codes
    from {{ ref('configurations') }}
    where is_counted

),

parent_codes as materialized (

    -- every code of every parent condition grouper of each RS grouper, distinct per system
    select distinct
        refs.child_grouper_url,
        refs.child_grouper_version,
        systems.system_key,
        codes.code collate "C" as code
    from {{ ref('tes_condition_grouper_references') }} as refs
    inner join {{ ref('tes_condition_groupers') }} as parents
        on
            refs.parent_grouper_url = parents.canonical_url
            and refs.parent_grouper_version = parents.version
    cross join lateral jsonb_each(parents.codes_by_system) as systems (system_key, system_codes)
    cross join lateral jsonb_array_elements_text(systems.system_codes) as codes (code)
    where refs.child_type = 'reporting_spec_grouper'

),

parent_system_sets as (

    select
        child_grouper_url,
        child_grouper_version,
        system_key,
        count(*) as code_count,
        sum(hashtextextended(code, 0)) as code_hash_sum,
        array_agg(code) as codes
    from parent_codes
    group by child_grouper_url, child_grouper_version, system_key

),

parent_all_sets as (

    select
        child_grouper_url,
        child_grouper_version,
        count(*) as code_count,
        sum(hashtextextended(code, 0)) as code_hash_sum,
        array_agg(code) as codes
    from (
        select distinct
            child_grouper_url,
            child_grouper_version,
            code
        from parent_codes
    ) as distinct_codes
    group by child_grouper_url, child_grouper_version

),

additions as materialized (

    select distinct
        counted.snomed_code,
        counted.jurisdiction_id,
        counted.child_grouper_url,
        counted.child_grouper_version,
        added.system_key,
        added.code collate "C" as code
    from counted
    cross join lateral (  -- noqa: ST05
        select
            'loinc' as system_key,
            unnest(counted.loinc_codes) as code
        union all
        select
            'snomed' as system_key,
            unnest(counted.snomed_codes) as code
        union all
        select
            'icd10' as system_key,
            unnest(counted.icd10_codes) as code
        union all
        select
            'rxnorm' as system_key,
            unnest(counted.rxnorm_codes) as code
    ) as added

),

expected_parts as (

    select
        counted.snomed_code,
        counted.jurisdiction_id,
        parent_system_sets.system_key,
        parent_system_sets.code_count,
        parent_system_sets.code_hash_sum
    from counted
    inner join parent_system_sets
        on
            counted.child_grouper_url = parent_system_sets.child_grouper_url
            and counted.child_grouper_version = parent_system_sets.child_grouper_version
    union all
    -- the additions of a system that the parents lack there
    select
        additions.snomed_code,
        additions.jurisdiction_id,
        additions.system_key,
        count(*) as code_count,
        sum(hashtextextended(additions.code, 0)) as code_hash_sum
    from additions
    left join parent_system_sets
        on
            additions.child_grouper_url = parent_system_sets.child_grouper_url
            and additions.child_grouper_version = parent_system_sets.child_grouper_version
            and additions.system_key = parent_system_sets.system_key
    where not coalesce(additions.code = any(parent_system_sets.codes), false)
    group by additions.snomed_code, additions.jurisdiction_id, additions.system_key

),

expected_by_system as (

    select
        snomed_code,
        jurisdiction_id,
        system_key,
        sum(code_count) as code_count,
        sum(code_hash_sum) as code_hash_sum
    from expected_parts
    group by snomed_code, jurisdiction_id, system_key

),

expected_all_parts as (

    -- every counted key, with or without codes
    select
        snomed_code,
        jurisdiction_id,
        0 as code_count,
        0 as code_hash_sum
    from counted
    union all
    select
        counted.snomed_code,
        counted.jurisdiction_id,
        parent_all_sets.code_count,
        parent_all_sets.code_hash_sum
    from counted
    inner join parent_all_sets
        on
            counted.child_grouper_url = parent_all_sets.child_grouper_url
            and counted.child_grouper_version = parent_all_sets.child_grouper_version
    union all
    -- the additions (any system) that no parent holds in any system
    select
        new_codes.snomed_code,
        new_codes.jurisdiction_id,
        count(*) as code_count,
        sum(hashtextextended(new_codes.code, 0)) as code_hash_sum
    from (
        select distinct
            additions.snomed_code,
            additions.jurisdiction_id,
            additions.code
        from additions
        left join parent_all_sets
            on
                additions.child_grouper_url = parent_all_sets.child_grouper_url
                and additions.child_grouper_version = parent_all_sets.child_grouper_version
        where not coalesce(additions.code = any(parent_all_sets.codes), false)
    ) as new_codes
    group by new_codes.snomed_code, new_codes.jurisdiction_id

),

expected_all as (

    select
        snomed_code,
        jurisdiction_id,
        sum(code_count) as code_count,
        sum(code_hash_sum) as code_hash_sum
    from expected_all_parts
    group by snomed_code, jurisdiction_id

),

actual_by_system as (

    -- fingerprinted array by array (a lateral aggregate), not by grouping millions of tuples
    select
        cache_rows.snomed_code,
        cache_rows.jurisdiction_id,
        systems.system_key,
        fingerprints.code_count,
        fingerprints.code_hash_sum,
        fingerprints.pair_hash_sum
    from {{ ref('refinement_cache') }} as cache_rows
    cross join lateral jsonb_each(cache_rows.codes_by_system) as systems (system_key, system_codes)
    cross join lateral (
        select
            count(*) as code_count,
            coalesce(sum(hashtextextended(codes.code, 0)), 0) as code_hash_sum,
            coalesce(sum({{ code_pair_hash('systems.system_key', 'codes.code') }}), 0) as pair_hash_sum
        from jsonb_array_elements_text(systems.system_codes) as codes (code)
    ) as fingerprints

),

actual_all as (

    select
        cache_rows.snomed_code,
        cache_rows.jurisdiction_id,
        cast(cardinality(cache_rows.aggregated_codes) as numeric) as code_count,
        coalesce((
            select sum(hashtextextended(codes.code, 0))
            from unnest(cache_rows.aggregated_codes) as codes (code)
        ), 0) as code_hash_sum
    from {{ ref('refinement_cache') }} as cache_rows

),

system_differences as (

    select
        coalesce(expected.snomed_code, actual.snomed_code) as snomed_code,
        coalesce(expected.jurisdiction_id, actual.jurisdiction_id) as jurisdiction_id,
        coalesce(expected.system_key, actual.system_key) as system_key,
        coalesce(expected.code_count, 0) as expected_code_count,
        coalesce(actual.code_count, 0) as actual_code_count
    from expected_by_system as expected
    full outer join actual_by_system as actual
        on
            expected.snomed_code = actual.snomed_code
            and expected.jurisdiction_id = actual.jurisdiction_id
            and expected.system_key = actual.system_key
    where
        expected.code_count is distinct from actual.code_count
        or expected.code_hash_sum is distinct from actual.code_hash_sum

),

all_differences as (

    select
        coalesce(expected.snomed_code, actual.snomed_code) as snomed_code,
        coalesce(expected.jurisdiction_id, actual.jurisdiction_id) as jurisdiction_id,
        coalesce(expected.code_count, 0) as expected_code_count,
        coalesce(actual.code_count, 0) as actual_code_count
    from expected_all as expected
    full outer join actual_all as actual
        on
            expected.snomed_code = actual.snomed_code
            and expected.jurisdiction_id = actual.jurisdiction_id
    where
        expected.code_count is distinct from actual.code_count
        or expected.code_hash_sum is distinct from actual.code_hash_sum

),

actual_fingerprints as (

    -- the code-set fingerprint of each row's codes_by_system (macros/code_fingerprint.sql)
    select
        snomed_code,
        jurisdiction_id,
        sum(code_count) as pair_count,
        sum(pair_hash_sum) as pair_hash_sum
    from actual_by_system
    group by snomed_code, jurisdiction_id

),

inconsistent as (

    select
        cache_rows.snomed_code,
        cache_rows.jurisdiction_id
    from {{ ref('refinement_cache') }} as cache_rows
    left join actual_fingerprints
        on
            cache_rows.snomed_code = actual_fingerprints.snomed_code
            and cache_rows.jurisdiction_id = actual_fingerprints.jurisdiction_id
    where
        cache_rows.content_sha256 is distinct from {{ code_set_sha256(
            'coalesce(actual_fingerprints.pair_count, 0)',
            'coalesce(actual_fingerprints.pair_hash_sum, 0)'
        ) }}

)

select
    'codes_by_system differs from the recomputation' as problem,
    system_differences.snomed_code,
    system_differences.jurisdiction_id,
    system_differences.system_key,
    system_differences.expected_code_count,
    system_differences.actual_code_count
from system_differences
union all
select
    'aggregated_codes differs from the recomputation' as problem,
    all_differences.snomed_code,
    all_differences.jurisdiction_id,
    null as system_key,
    all_differences.expected_code_count,
    all_differences.actual_code_count
from all_differences
union all
select
    'content_sha256 disagrees with codes_by_system' as problem,
    inconsistent.snomed_code,
    inconsistent.jurisdiction_id,
    null as system_key,
    null as expected_code_count,
    null as actual_code_count
from inconsistent
