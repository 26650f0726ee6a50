{#-
    Recompute every cache row from the serving tables with a different formulation and compare
    exactly: the parents' codes are re-derived from tes_condition_grouper_references and
    tes_condition_groupers (unnested and re-aggregated per RS grouper, not taken from the
    model's precomputed bases), the additions from `configurations` by set difference, and each
    row must equal, array for array, the documented result: the parents' codes sorted
    bytewise, then the additions they lack, sorted bytewise (overall in aggregated_codes, per
    system in codes_by_system). Exact equality also proves the codes distinct.
    content_sha256 is checked against the fingerprint of the expected codes (count and sum of
    the 64-bit hashes of the (system, code) pairs, macros/code_fingerprint.sql), computed from
    the re-derived parents' codes and additions.
    The per-code work is done once per RS grouper (hundreds), not once per row (thousands): the
    rows only assemble arrays and compare them.
    Rows whose configuration excludes codes are left to assert_code_exclusions_applied and to the
    Python oracle (tests/cache_oracle.py); every row's code_system_sets is checked against its
    codes_by_system by assert_code_system_sets_agree.
    `keys`: none for every row, else a SQL query returning the keys (snomed_code,
    jurisdiction_id) to check (the rows a build wrote: assert_refinement_cache_written_rows_match_recomputation).
-#}
{% macro refinement_cache_recomputation_problems(keys=none) -%}
    {%- set in_scope = 'true' if keys is none else '(snomed_code, jurisdiction_id) in (' ~ keys ~ ')' -%}
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
        where is_counted and cardinality(excluded_codes) = 0 and {{ in_scope }}

    ),

    parent_pairs as (

        -- every (system, code) of every parent condition grouper of each configured RS grouper
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
        where
            refs.child_type = 'reporting_spec_grouper'
            and exists (
                select 1
                from counted
                where
                    counted.child_grouper_url = refs.child_grouper_url
                    and counted.child_grouper_version = refs.child_grouper_version
            )

    ),

    parent_system_codes as materialized (

        select
            child_grouper_url,
            child_grouper_version,
            system_key,
            array_agg(code order by code) as codes
        from parent_pairs
        group by child_grouper_url, child_grouper_version, system_key

    ),

    parent_all_codes as (

        select
            child_grouper_url,
            child_grouper_version,
            array_agg(distinct code order by code) as codes
        from parent_pairs
        group by child_grouper_url, child_grouper_version

    ),

    parent_fingerprints as (

        {{ aggregate_code_fingerprints('parent_pairs', ['child_grouper_url', 'child_grouper_version']) }}

    ),

    parent_sets as materialized (

        select
            parent_all_codes.child_grouper_url,
            parent_all_codes.child_grouper_version,
            parent_all_codes.codes,
            parent_fingerprints.pair_count,
            parent_fingerprints.pair_hash_sum
        from parent_all_codes
        inner join parent_fingerprints
            on
                parent_all_codes.child_grouper_url = parent_fingerprints.child_grouper_url
                and parent_all_codes.child_grouper_version = parent_fingerprints.child_grouper_version

    ),

    added_pairs as (

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

    new_pairs as materialized (

        -- the additions their system's parents' codes lack
        select
            added_pairs.snomed_code,
            added_pairs.jurisdiction_id,
            added_pairs.child_grouper_url,
            added_pairs.child_grouper_version,
            added_pairs.system_key,
            added_pairs.code
        from added_pairs
        left join parent_system_codes
            on
                added_pairs.child_grouper_url = parent_system_codes.child_grouper_url
                and added_pairs.child_grouper_version = parent_system_codes.child_grouper_version
                and added_pairs.system_key = parent_system_codes.system_key
        where not coalesce(added_pairs.code = any(parent_system_codes.codes), false)

    ),

    new_codes as (

        -- per row: the additions no parent holds in any system, sorted
        select
            new_pairs.snomed_code,
            new_pairs.jurisdiction_id,
            array_agg(distinct new_pairs.code order by new_pairs.code) as codes
        from new_pairs
        left join parent_sets
            on
                new_pairs.child_grouper_url = parent_sets.child_grouper_url
                and new_pairs.child_grouper_version = parent_sets.child_grouper_version
        where not coalesce(new_pairs.code = any(parent_sets.codes), false)
        group by new_pairs.snomed_code, new_pairs.jurisdiction_id

    ),

    new_fingerprints as (

        {{ aggregate_code_fingerprints('new_pairs', ['snomed_code', 'jurisdiction_id']) }}

    ),

    expected_rows as (

        select
            counted.snomed_code,
            counted.jurisdiction_id,
            coalesce(parent_sets.codes, '{}') || coalesce(new_codes.codes, '{}') as aggregated_codes,
            {{ code_set_sha256(
                'coalesce(parent_sets.pair_count, 0) + coalesce(new_fingerprints.pair_count, 0)',
                'coalesce(parent_sets.pair_hash_sum, 0) + coalesce(new_fingerprints.pair_hash_sum, 0)'
            ) }} as content_sha256
        from counted
        left join parent_sets
            on
                counted.child_grouper_url = parent_sets.child_grouper_url
                and counted.child_grouper_version = parent_sets.child_grouper_version
        left join new_codes
            on
                counted.snomed_code = new_codes.snomed_code
                and counted.jurisdiction_id = new_codes.jurisdiction_id
        left join new_fingerprints
            on
                counted.snomed_code = new_fingerprints.snomed_code
                and counted.jurisdiction_id = new_fingerprints.jurisdiction_id

    ),

    new_system_codes as (

        select
            snomed_code,
            jurisdiction_id,
            child_grouper_url,
            child_grouper_version,
            system_key,
            array_agg(code order by code) as codes
        from new_pairs
        group by snomed_code, jurisdiction_id, child_grouper_url, child_grouper_version, system_key

    ),

    parent_system_json as materialized (

        -- each RS grouper's parents' codes of a system as the JSON array a row without additions
        -- in that system must hold, built once per RS grouper rather than once per row
        select
            child_grouper_url,
            child_grouper_version,
            system_key,
            to_jsonb(codes) as codes_json
        from parent_system_codes

    ),

    expected_systems as (

        -- per row and system: the parents' codes of that system, then the additions they lack
        select
            counted.snomed_code,
            counted.jurisdiction_id,
            parent_system_json.system_key,
            case
                when new_system_codes.codes is null then parent_system_json.codes_json
                else parent_system_json.codes_json || to_jsonb(new_system_codes.codes)
            end as codes_json
        from counted
        inner join parent_system_json
            on
                counted.child_grouper_url = parent_system_json.child_grouper_url
                and counted.child_grouper_version = parent_system_json.child_grouper_version
        left join new_system_codes
            on
                counted.snomed_code = new_system_codes.snomed_code
                and counted.jurisdiction_id = new_system_codes.jurisdiction_id
                and parent_system_json.system_key = new_system_codes.system_key
        union all
        -- systems only the additions bring
        select
            new_system_codes.snomed_code,
            new_system_codes.jurisdiction_id,
            new_system_codes.system_key,
            to_jsonb(new_system_codes.codes) as codes_json
        from new_system_codes
        where not exists (
            select 1
            from parent_system_codes
            where
                new_system_codes.child_grouper_url = parent_system_codes.child_grouper_url
                and new_system_codes.child_grouper_version = parent_system_codes.child_grouper_version
                and new_system_codes.system_key = parent_system_codes.system_key
        )

    ),

    cache_rows as (

        select
            snomed_code,
            jurisdiction_id,
            aggregated_codes,
            codes_by_system,
            content_sha256
        from {{ ref('refinement_cache') }} as cache_table
        where
            {{ in_scope }}
            and not exists (
                select 1
                from {{ ref('configurations') }} as excluding
                where
                    excluding.is_counted
                    and cardinality(excluding.excluded_codes) > 0
                    and excluding.snomed_code = cache_table.snomed_code
                    and excluding.jurisdiction_id = cache_table.jurisdiction_id
            )

    ),

    actual_systems as (

        select
            cache_rows.snomed_code,
            cache_rows.jurisdiction_id,
            systems.system_key,
            systems.codes_json
        from cache_rows
        cross join lateral jsonb_each(cache_rows.codes_by_system) as systems (system_key, codes_json)

    ),

    system_differences as (

        select
            coalesce(expected.snomed_code, actual.snomed_code) as snomed_code,
            coalesce(expected.jurisdiction_id, actual.jurisdiction_id) as jurisdiction_id,
            'codes_by_system differs from the recomputation ('
            || coalesce(expected.system_key, actual.system_key) || ')' as problem,
            jsonb_array_length(expected.codes_json) as expected_code_count,
            jsonb_array_length(actual.codes_json) as actual_code_count
        from expected_systems as expected
        full outer join actual_systems as actual
            on
                expected.snomed_code = actual.snomed_code
                and expected.jurisdiction_id = actual.jurisdiction_id
                and expected.system_key = actual.system_key
        where expected.codes_json is distinct from actual.codes_json

    ),

    compared as (

        select
            coalesce(expected.snomed_code, actual.snomed_code) as snomed_code,
            coalesce(expected.jurisdiction_id, actual.jurisdiction_id) as jurisdiction_id,
            case
                when actual.snomed_code is null then 'row missing from refinement_cache'
                when expected.snomed_code is null then 'row no counted configuration reaches'
                when (actual.aggregated_codes is distinct from expected.aggregated_codes)
                    then 'aggregated_codes differs from the recomputation'
                when (actual.content_sha256 is distinct from expected.content_sha256)
                    then 'content_sha256 disagrees with the codes'
            end as problem,
            cardinality(expected.aggregated_codes) as expected_code_count,
            cardinality(actual.aggregated_codes) as actual_code_count
        from expected_rows as expected
        full outer join cache_rows as actual
            on
                expected.snomed_code = actual.snomed_code
                and expected.jurisdiction_id = actual.jurisdiction_id

    )

    select
        problem,
        snomed_code,
        jurisdiction_id,
        expected_code_count,
        actual_code_count
    from compared
    where problem is not null
    union all
    select
        problem,
        snomed_code,
        jurisdiction_id,
        expected_code_count,
        actual_code_count
    from system_differences
{%- endmacro %}
