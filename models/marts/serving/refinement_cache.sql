{{ config(
    pre_hook=['{{ tune_session() }}; set local enable_mergejoin = off; set local enable_nestloop = off'],
    materialized='incremental_upsert',
    unique_key=['snomed_code', 'jurisdiction_id'],
    preserve_unless_changed={'updated_at': 'content_sha256'},
    delete_if_null='source_sha256',
    inputs_fingerprint={
        'ref': 'int_cache_inputs_fingerprinted',
        'partition_by': 'jurisdiction_id',
        'column': 'inputs_fingerprint',
    },
    indexes=[{'columns': ['jurisdiction_id']}],
    storage_parameters={'toast_tuple_target': 128},
    column_collations={'aggregated_codes': 'C'},
    column_storage={
        'snomed_code': 'plain', 'jurisdiction_id': 'plain',
        'source_sha256': 'plain', 'content_sha256': 'plain',
    },
) }}
{#-
    What the Refiner reads: one row per (snomed_code, jurisdiction_id) reached by a counted
    configuration. aggregated_codes = the codes of every parent condition grouper of the
    configured RS grouper (their distinct union, precomputed once per RS grouper in
    int_rs_grouper_parent_codes: the "base"), followed by the configuration's added codes that
    the base lacks.

    Incremental (macros/materializations/incremental_upsert.sql): source_sha256 fingerprints
    everything a row is built from (the winning configuration's content, its RS grouper, the
    parents and their codes). A build recomputes only the keys whose source_sha256 differs
    from the stored one (new keys included) and upserts them; updated_at is kept where
    content_sha256 did not change. The same hash full join finds the stored keys no counted
    configuration reaches any more; they are returned with a null source_sha256, which makes
    the materialization delete them in the same statement (delete_if_null). A jurisdiction's
    rows are a function of its counted (key, source_sha256) pairs alone, so the diff reads only
    the jurisdictions whose fingerprint (int_cache_inputs_fingerprinted) is not the one the
    table was last written from (inputs_fingerprint, incremental_upsert_in_changed_partitions),
    through the jurisdiction_id indexes; when none changed, nothing is diffed at all.

    Storage: the code arrays and source_details live out of line (toast_tuple_target 128) while
    the keys and hashes stay in the heap (storage plain), so the diffs scan a few MB instead
    of every row's codes. aggregated_codes is collated "C" (bytewise, the order of every code
    array here). "Which conditions contain code X" is not asked of this table (no GIN index:
    its build was most of a full build's cost): the analytics mart condition_grouper_codes
    answers it at grouper granularity through a btree index (docs/analytics.md).

    Merge and nested-loop joins are off for this model: the key diff (new, changed and stale
    keys) joins ~all keys, and one hash join (~10 ms at production scale) beats both the merge
    joins the planner tends to pick (sorting text keys under the database collation) and the
    nested loops it picks once the heap is small (a primary-key probe per key).
-#}
-- noqa: disable=LT01,LT02,LT05,CV11,AM06,ST05
-- (text [] spacing, the cast() column list of the contract, the Jinja-built CTEs and the
-- once-per-row lateral sub-select)
-- depends_on: {{ ref('int_cache_inputs_fingerprinted') }}
{%- set incremental = is_incremental_upsert() %}
{%- set in_changed_jurisdictions = incremental_upsert_in_changed_partitions('jurisdiction_id') %}
with

counted as (

    select
        configuration_id,
        snomed_code,
        jurisdiction_id,
        child_grouper_url,
        child_grouper_version,
        configuration_sha256,
        cache_source_sha256 as source_sha256,
        added_loinc_codes,
        added_snomed_codes,
        added_icd10_codes,
        added_rxnorm_codes
    from {{ ref('int_configurations_evaluated') }}
    where
        is_counted
        {%- if incremental %}
        and {{ in_changed_jurisdictions }}
        {%- endif %}

),

{%- if incremental %}

current_rows as (

    select
        snomed_code,
        jurisdiction_id,
        source_sha256
    from {{ this }}
    where {{ in_changed_jurisdictions }}

),

key_changes as materialized (

    -- one hash full join of the changed jurisdictions' counted keys with their stored ones,
    -- on the narrow leading columns only: the keys that are new or whose fingerprint changed,
    -- and the stored keys no counted configuration reaches any more (counted side null)
    select
        counted_keys.snomed_code,
        counted_keys.jurisdiction_id,
        current_rows.snomed_code as stored_snomed_code,
        current_rows.jurisdiction_id as stored_jurisdiction_id
    from (
        select
            snomed_code,
            jurisdiction_id,
            cache_source_sha256 as source_sha256
        from {{ ref('int_configurations_evaluated') }}
        where is_counted and {{ in_changed_jurisdictions }}
    ) as counted_keys
    full join current_rows
        on
            counted_keys.snomed_code = current_rows.snomed_code
            and counted_keys.jurisdiction_id = current_rows.jurisdiction_id
    where counted_keys.source_sha256 is distinct from current_rows.source_sha256

),

affected as (

    -- their configurations (a semi-join: nothing to read when no key changed)
    select counted.*
    from counted
    where exists (
        select 1
        from key_changes
        where
            key_changes.snomed_code = counted.snomed_code
            and key_changes.jurisdiction_id = counted.jurisdiction_id
    )

),
{%- else %}

affected as (

    select * from counted

),
{%- endif %}

affected_bases as materialized (

    -- the code arrays of the bases the affected rows need, detoasted once here by slicing
    -- ([:]): the per-row binary searches below read each array several times
    select
        base_arrays.child_grouper_url,
        base_arrays.child_grouper_version,
        base_arrays.base_codes_by_system,
        base_arrays.base_pair_count,
        base_arrays.base_pair_hash_sum,
        base_arrays.parent_groupers,
        base_arrays.base_sha256,
        base_arrays.base_codes[:] as base_codes,
        base_arrays.base_loinc_codes[:] as base_loinc_codes,
        base_arrays.base_snomed_codes[:] as base_snomed_codes,
        base_arrays.base_icd10_codes[:] as base_icd10_codes,
        base_arrays.base_rxnorm_codes[:] as base_rxnorm_codes
    from {{ ref('int_rs_grouper_parent_codes') }} as base_arrays
    where exists (
        select 1
        from affected
        where
            affected.child_grouper_url = base_arrays.child_grouper_url
            and affected.child_grouper_version = base_arrays.child_grouper_version
    )

),

extras as (

    -- the added codes each row's base lacks, per system and overall (most rows: a few or none)
    select
        affected.snomed_code,
        affected.jurisdiction_id,
        affected.configuration_id,
        affected.configuration_sha256,
        affected.child_grouper_url,
        affected.child_grouper_version,
        affected.source_sha256,
        bases.parent_groupers,
        bases.base_sha256,
        bases.base_codes,
        bases.base_codes_by_system,
        bases.base_pair_count,
        bases.base_pair_hash_sum,
        missing.extra_loinc_codes,
        missing.extra_snomed_codes,
        missing.extra_icd10_codes,
        missing.extra_rxnorm_codes,
        missing.extra_codes
    from affected
    inner join affected_bases as bases
        on
            affected.child_grouper_url = bases.child_grouper_url
            and affected.child_grouper_version = bases.child_grouper_version
    cross join lateral (
        -- computed once per row: `offset 0` keeps PostgreSQL from inlining these expressions
        -- into every later reference (each would run its sub-select again)
        select
            {{ sorted_missing('affected.added_loinc_codes', 'bases.base_loinc_codes') }}
                as extra_loinc_codes,
            {{ sorted_missing('affected.added_snomed_codes', 'bases.base_snomed_codes') }}
                as extra_snomed_codes,
            {{ sorted_missing('affected.added_icd10_codes', 'bases.base_icd10_codes') }}
                as extra_icd10_codes,
            {{ sorted_missing('affected.added_rxnorm_codes', 'bases.base_rxnorm_codes') }}
                as extra_rxnorm_codes,
            array(
                select distinct added.code collate "C"
                from unnest(
                    affected.added_loinc_codes || affected.added_snomed_codes
                    || affected.added_icd10_codes || affected.added_rxnorm_codes
                ) as added (code)
                where bases.base_codes[width_bucket(added.code collate "C", bases.base_codes)] is distinct from added.code
                order by 1
            )::text [] as extra_codes
        from (values (1)) as one_row (n)
        offset 0  -- noqa: AM09
    ) as missing

),

computed as (

    select
        snomed_code,
        jurisdiction_id,
        base_codes || extra_codes as aggregated_codes,
        case
            when
                cardinality(extra_loinc_codes) + cardinality(extra_snomed_codes)
                + cardinality(extra_icd10_codes) + cardinality(extra_rxnorm_codes) = 0
                then base_codes_by_system
            else base_codes_by_system || jsonb_strip_nulls(jsonb_build_object(
                'loinc',
                case
                    when cardinality(extra_loinc_codes) > 0
                        then coalesce(base_codes_by_system -> 'loinc', '[]'::jsonb)
                        || to_jsonb(extra_loinc_codes)
                end,
                'snomed',
                case
                    when cardinality(extra_snomed_codes) > 0
                        then coalesce(base_codes_by_system -> 'snomed', '[]'::jsonb)
                        || to_jsonb(extra_snomed_codes)
                end,
                'icd10',
                case
                    when cardinality(extra_icd10_codes) > 0
                        then coalesce(base_codes_by_system -> 'icd10', '[]'::jsonb)
                        || to_jsonb(extra_icd10_codes)
                end,
                'rxnorm',
                case
                    when cardinality(extra_rxnorm_codes) > 0
                        then coalesce(base_codes_by_system -> 'rxnorm', '[]'::jsonb)
                        || to_jsonb(extra_rxnorm_codes)
                end
            ))
        end as codes_by_system,
        jsonb_build_object(
            'configuration_id', configuration_id,
            'configuration_sha256', configuration_sha256,
            'child_grouper_url', child_grouper_url,
            'child_grouper_version', child_grouper_version,
            'parent_groupers', parent_groupers,
            'parents_codes_sha256', base_sha256
        ) as source_details,
        source_sha256,
        base_pair_count
        + cardinality(extra_loinc_codes)
        + cardinality(extra_snomed_codes)
        + cardinality(extra_icd10_codes)
        + cardinality(extra_rxnorm_codes) as pair_count,
        base_pair_hash_sum
        + coalesce((
            select sum({{ code_pair_hash("'loinc'", 'extra.code') }})
            from unnest(extra_loinc_codes) as extra (code)
        ), 0)
        + coalesce((
            select sum({{ code_pair_hash("'snomed'", 'extra.code') }})
            from unnest(extra_snomed_codes) as extra (code)
        ), 0)
        + coalesce((
            select sum({{ code_pair_hash("'icd10'", 'extra.code') }})
            from unnest(extra_icd10_codes) as extra (code)
        ), 0)
        + coalesce((
            select sum({{ code_pair_hash("'rxnorm'", 'extra.code') }})
            from unnest(extra_rxnorm_codes) as extra (code)
        ), 0) as pair_hash_sum
    from extras

)

select
    cast(snomed_code as text) as snomed_code,
    cast(jurisdiction_id as text) as jurisdiction_id,
    cast(aggregated_codes as text []) as aggregated_codes,
    cast(codes_by_system as jsonb) as codes_by_system,
    cast(source_details as jsonb) as source_details,
    cast(source_sha256 as text) as source_sha256,
    cast({{ code_set_sha256('pair_count', 'pair_hash_sum') }} as text) as content_sha256,
    cast(now() as timestamptz) as updated_at
from computed
{%- if incremental %}

union all

-- the stored keys to delete: a null source_sha256 (delete_if_null) and nothing else
select
    cast(stored_snomed_code as text) as snomed_code,
    cast(stored_jurisdiction_id as text) as jurisdiction_id,
    cast(null as text []) as aggregated_codes,
    cast(null as jsonb) as codes_by_system,
    cast(null as jsonb) as source_details,
    cast(null as text) as source_sha256,
    cast(null as text) as content_sha256,
    cast(null as timestamptz) as updated_at
from key_changes
where snomed_code is null
{%- endif %}
