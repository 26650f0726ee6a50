{{ config(
    pre_hook=['set local enable_mergejoin = off; set local enable_nestloop = off'],
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
        {%- for system in configuration_code_systems() %}
        added_{{ system }}_codes,
        {%- endfor %}
        excluded_bare_codes,
        excluded_system_codes,
        cardinality(excluded_bare_codes) + cardinality(excluded_system_codes) > 0 as has_exclusions
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
        base_arrays.base_code_system_sets,
        {%- for system in configuration_code_systems() %}
        base_arrays.base_{{ system }}_codes[:] as base_{{ system }}_codes,
        {%- endfor %}
        base_arrays.base_codes[:] as base_codes
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
        bases.base_code_system_sets,
        bases.base_pair_count,
        bases.base_pair_hash_sum,
        affected.has_exclusions,
        {%- for system in configuration_code_systems() %}
        missing.extra_{{ system }}_codes,
        {%- endfor %}
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
            {%- for system in configuration_code_systems() %}
            {{ sorted_missing('affected.added_' ~ system ~ '_codes', 'bases.base_' ~ system ~ '_codes') }}
                as extra_{{ system }}_codes,
            {%- endfor %}
            array(
                select distinct added.code collate "C"
                from unnest(
                    {%- for system in configuration_code_systems() %}
                    {{ '|| ' if not loop.first }}affected.added_{{ system }}_codes
                    {%- endfor %}
                ) as added (code)
                where bases.base_codes[width_bucket(added.code collate "C", bases.base_codes)] is distinct from added.code
                order by 1
            )::text [] as extra_codes
        from (values (1)) as one_row (n)
        offset 0  -- noqa: AM09
    ) as missing

),

key_oids as (

    -- the OID of each of the five named code_system_sets keys (code_systems seed)
    select
    {%- for set_key in code_system_set_keys() %}
        min(oid) filter (where short_name = '{{ set_key }}') as {{ set_key }}_oid{{ ',' if not loop.last }}
    {%- endfor %}
    from {{ ref('code_systems') }}

),

extra_entries as (

    -- the entries of the added codes each row's base lacks (rows without exclusions), their
    -- displays found by one hash join for all rows, not a lookup per row
    select
        extra_codes.snomed_code,
        extra_codes.jurisdiction_id,
        extra_codes.set_key,
        jsonb_agg(
            {{ code_set_entry('extra_codes.code', "coalesce(displays.display, '')", 'extra_codes.set_system') }}
            order by extra_codes.position
        ) as entries
    from (
        {%- for set_key in configuration_code_systems() %}
        {{ 'union all' if not loop.first }}
        select
            extras.snomed_code,
            extras.jurisdiction_id,
            '{{ set_key }}' as set_key,
            key_oids.{{ set_key }}_oid as set_system,
            extra.code,
            extra.position
        from extras
        cross join key_oids
        cross join lateral unnest(extras.extra_{{ set_key }}_codes) with ordinality as extra (code, position)
        where not extras.has_exclusions
        {%- endfor %}
    ) as extra_codes
    left join {{ ref('int_code_displays') }} as displays
        on
            extra_codes.set_key = displays.system_key
            and extra_codes.code = displays.code
    group by extra_codes.snomed_code, extra_codes.jurisdiction_id, extra_codes.set_key

),

extra_sets as (

    select
        snomed_code,
        jurisdiction_id,
        jsonb_object_agg(set_key, entries) as entries_by_key
    from extra_entries
    group by snomed_code, jurisdiction_id

),

computed_without_exclusions as (

    -- most rows: the base's arrays, then the additions it lacks (concatenation only)
    select
        extras.snomed_code,
        extras.jurisdiction_id,
        extras.base_codes || extras.extra_codes as aggregated_codes,
        case
            when
                {{ extra_code_count('extras') }} = 0
                then extras.base_codes_by_system
            else extras.base_codes_by_system || jsonb_strip_nulls(jsonb_build_object(
            {%- for system in configuration_code_systems() %}
                '{{ system }}',
                case
                    when cardinality(extras.extra_{{ system }}_codes) > 0
                        then coalesce(extras.base_codes_by_system -> '{{ system }}', '[]'::jsonb)
                        || to_jsonb(extras.extra_{{ system }}_codes)
                end{{ ',' if not loop.last }}
            {%- endfor %}
            ))
        end as codes_by_system,
        case
            when extra_sets.entries_by_key is null then extras.base_code_system_sets
            else extras.base_code_system_sets || (
                select jsonb_object_agg(added.set_key, (extras.base_code_system_sets -> added.set_key) || added.entries)
                from jsonb_each(extra_sets.entries_by_key) as added (set_key, entries)
            )
        end as code_system_sets,
        jsonb_build_object(
            'configuration_id', extras.configuration_id,
            'configuration_sha256', extras.configuration_sha256,
            'child_grouper_url', extras.child_grouper_url,
            'child_grouper_version', extras.child_grouper_version,
            'parent_groupers', extras.parent_groupers,
            'parents_codes_sha256', extras.base_sha256
        ) as source_details,
        extras.source_sha256,
        extras.base_pair_count + {{ extra_code_count('extras') }} as pair_count,
        extras.base_pair_hash_sum
        {%- for system in configuration_code_systems() %}
        + coalesce((
            select sum({{ code_pair_hash("'" ~ system ~ "'", 'extra.code') }})
            from unnest(extras.extra_{{ system }}_codes) as extra (code)
        ), 0)
        {%- endfor %} as pair_hash_sum
    from extras
    left join extra_sets
        on
            extras.snomed_code = extra_sets.snomed_code
            and extras.jurisdiction_id = extra_sets.jurisdiction_id
    where not extras.has_exclusions

),

excluding_rows as (

    -- rows with exclusions (few): recomputed from their (system, code) pairs
    select
        extras.snomed_code,
        extras.jurisdiction_id,
        extras.configuration_id,
        extras.configuration_sha256,
        extras.child_grouper_url,
        extras.child_grouper_version,
        extras.source_sha256,
        extras.parent_groupers,
        extras.base_sha256,
        extras.base_codes_by_system,
        {%- for system in configuration_code_systems() %}
        affected.added_{{ system }}_codes,
        {%- endfor %}
        affected.excluded_bare_codes,
        affected.excluded_system_codes
    from extras
    inner join affected
        on
            extras.snomed_code = affected.snomed_code
            and extras.jurisdiction_id = affected.jurisdiction_id
    where extras.has_exclusions

),

kept_pairs as (

    -- the pairs an excluding row keeps: the base's and the additions', minus the exclusions;
    -- in_base orders them (the base's codes first, then the additions it lacks)
    select
        excluding_rows.snomed_code,
        excluding_rows.jurisdiction_id,
        listed.system_key collate "C" as system_key,
        listed.code collate "C" as code,
        bool_or(listed.in_base) as in_base
    from excluding_rows
    cross join lateral (
        select
            systems.system_key,
            system_codes.code,
            true as in_base
        from jsonb_each(excluding_rows.base_codes_by_system) as systems (system_key, codes_json)
        cross join lateral jsonb_array_elements_text(systems.codes_json) as system_codes (code)
        {%- for set_key in configuration_code_systems() %}
        union all
        select
            '{{ set_key }}' as system_key,
            added.code,
            false as in_base
        from unnest(excluding_rows.added_{{ set_key }}_codes) as added (code)
        {%- endfor %}
    ) as listed
    where
        not listed.code = any(excluding_rows.excluded_bare_codes)
        and not (listed.system_key || '|' || listed.code) = any(excluding_rows.excluded_system_codes)
    group by excluding_rows.snomed_code, excluding_rows.jurisdiction_id, listed.system_key, listed.code

),

kept_systems as (

    select
        snomed_code,
        jurisdiction_id,
        jsonb_object_agg(system_key, codes) as codes_by_system
    from (
        select
            snomed_code,
            jurisdiction_id,
            system_key,
            to_jsonb(array_agg(code order by not in_base, code)) as codes
        from kept_pairs
        group by snomed_code, jurisdiction_id, system_key
    ) as per_system
    group by snomed_code, jurisdiction_id

),

kept_codes as (

    select
        snomed_code,
        jurisdiction_id,
        array_agg(code order by not in_base, code)::text [] as aggregated_codes
    from (
        select
            snomed_code,
            jurisdiction_id,
            code,
            bool_or(in_base) as in_base
        from kept_pairs
        group by snomed_code, jurisdiction_id, code
    ) as per_code
    group by snomed_code, jurisdiction_id

),

kept_sets as (

    select
        kept_pairs.snomed_code,
        kept_pairs.jurisdiction_id,
        count(*) as pair_count,
        sum({{ code_pair_hash('kept_pairs.system_key', 'kept_pairs.code') }}) as pair_hash_sum,
        jsonb_build_object(
        {%- for set_key in code_system_set_keys() + ['other'] %}
            '{{ set_key }}',
            coalesce(
                jsonb_agg(
                    {{ code_set_entry(
                        'kept_pairs.code',
                        "coalesce(displays.display, '')",
                        'coalesce(displays.set_system, key_oids.' ~ set_key ~ '_oid)'
                            if set_key != 'other' else 'displays.set_system'
                    ) }}
                    order by not kept_pairs.in_base, kept_pairs.system_key, kept_pairs.code
                ) filter (where coalesce(displays.set_key, kept_pairs.system_key) = '{{ set_key }}'),
                '[]'::jsonb
            ){{ ',' if not loop.last }}
        {%- endfor %}
        ) as code_system_sets
    from kept_pairs
    cross join key_oids
    left join {{ ref('int_code_displays') }} as displays
        on
            kept_pairs.system_key = displays.system_key
            and kept_pairs.code = displays.code
    group by kept_pairs.snomed_code, kept_pairs.jurisdiction_id

),

computed_with_exclusions as (

    select
        excluding_rows.snomed_code,
        excluding_rows.jurisdiction_id,
        coalesce(kept_codes.aggregated_codes, '{}')::text [] as aggregated_codes,
        coalesce(kept_systems.codes_by_system, '{}'::jsonb) as codes_by_system,
        coalesce(kept_sets.code_system_sets, {{ empty_code_system_sets() }}) as code_system_sets,
        jsonb_build_object(
            'configuration_id', excluding_rows.configuration_id,
            'configuration_sha256', excluding_rows.configuration_sha256,
            'child_grouper_url', excluding_rows.child_grouper_url,
            'child_grouper_version', excluding_rows.child_grouper_version,
            'parent_groupers', excluding_rows.parent_groupers,
            'parents_codes_sha256', excluding_rows.base_sha256
        ) as source_details,
        excluding_rows.source_sha256,
        coalesce(kept_sets.pair_count, 0) as pair_count,
        coalesce(kept_sets.pair_hash_sum, 0) as pair_hash_sum
    from excluding_rows
    left join kept_systems
        on
            excluding_rows.snomed_code = kept_systems.snomed_code
            and excluding_rows.jurisdiction_id = kept_systems.jurisdiction_id
    left join kept_codes
        on
            excluding_rows.snomed_code = kept_codes.snomed_code
            and excluding_rows.jurisdiction_id = kept_codes.jurisdiction_id
    left join kept_sets
        on
            excluding_rows.snomed_code = kept_sets.snomed_code
            and excluding_rows.jurisdiction_id = kept_sets.jurisdiction_id

),

computed as (

    select * from computed_without_exclusions
    union all
    select * from computed_with_exclusions

)

select
    cast(snomed_code as text) as snomed_code,
    cast(jurisdiction_id as text) as jurisdiction_id,
    cast(aggregated_codes as text []) as aggregated_codes,
    cast(codes_by_system as jsonb) as codes_by_system,
    cast(code_system_sets as jsonb) as code_system_sets,
    cast(source_details as jsonb) as source_details,
    cast(source_sha256 as text) as source_sha256,
    cast({{ code_set_sha256('pair_count', 'pair_hash_sum') }} as text) as content_sha256,
    cast(now() as timestamptz) as updated_at,
    cast(now() as timestamptz) as written_at
from computed
{%- if incremental %}

union all

-- the stored keys to delete: a null source_sha256 (delete_if_null) and nothing else
select
    cast(stored_snomed_code as text) as snomed_code,
    cast(stored_jurisdiction_id as text) as jurisdiction_id,
    cast(null as text []) as aggregated_codes,
    cast(null as jsonb) as codes_by_system,
    cast(null as jsonb) as code_system_sets,
    cast(null as jsonb) as source_details,
    cast(null as text) as source_sha256,
    cast(null as text) as content_sha256,
    cast(null as timestamptz) as updated_at,
    cast(null as timestamptz) as written_at
from key_changes
where snomed_code is null
{%- endif %}
