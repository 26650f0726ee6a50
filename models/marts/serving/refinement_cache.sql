{{ config(
    pre_hook=['{{ tune_session() }}'],
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key=['snomed_code', 'jurisdiction_id'],
    on_schema_change='fail',
    post_hook=["{{ refinement_cache_delete_stale() }}"],
) }}
{#-
    What the Refiner reads: one row per (snomed_code, jurisdiction_id) reached by a counted
    configuration. aggregated_codes = the distinct union of the codes of every parent condition
    grouper of the configured RS grouper (precomputed once per RS grouper in
    int_rs_grouper_parent_codes) plus the configuration's added codes.

    Incremental: source_details records everything a row is built from (the winning
    configuration and its content hash, the parents and the hash of their codes). A run
    recomputes only the keys whose desired source_details differ from the stored ones (new keys
    included), rewrites them (delete+insert on the key), keeps updated_at when the content hash
    did not change, and a post-hook deletes the keys no counted configuration reaches any more.
-#}
-- noqa: disable=LT01,LT02,LT05,CV11,ST11,AM06
-- (the is_incremental() branches defeat the layout rules' view of indentation and joins)
with

counted as (

    select
        configuration_id,
        snomed_code,
        jurisdiction_id,
        child_grouper_url,
        child_grouper_version,
        configuration_sha256,
        added_loinc_codes,
        added_snomed_codes,
        added_icd10_codes,
        added_rxnorm_codes
    from {{ ref('int_configurations_evaluated') }}
    where is_counted

),

bases as (

    select
        child_grouper_url,
        child_grouper_version,
        parent_groupers,
        base_sha256
    from {{ ref('int_rs_grouper_parent_codes') }}

),

desired as (

    select
        counted.*,
        bases.parent_groupers,
        bases.base_sha256,
        jsonb_build_object(
            'configuration_id', counted.configuration_id,
            'configuration_sha256', counted.configuration_sha256,
            'child_grouper_url', counted.child_grouper_url,
            'child_grouper_version', counted.child_grouper_version,
            'parent_groupers', bases.parent_groupers,
            'parents_codes_sha256', bases.base_sha256
        ) as source_details
    from counted
    inner join bases
        on
            counted.child_grouper_url = bases.child_grouper_url
            and counted.child_grouper_version = bases.child_grouper_version

),

{% if is_incremental() %}

current_rows as not materialized (

    select
        snomed_code,
        jurisdiction_id,
        source_details,
        content_sha256,
        updated_at
    from {{ this }}

),

affected as (

    select desired.*
    from desired
    left join current_rows
        on
            desired.snomed_code = current_rows.snomed_code
            and desired.jurisdiction_id = current_rows.jurisdiction_id
    -- = "source_details is distinct from desired.source_details", compared key by key (the
    -- stored object holds exactly these keys): no jsonb object is built for unchanged rows
    where
        current_rows.snomed_code is null
        or (current_rows.source_details -> 'configuration_id') is distinct from to_jsonb(desired.configuration_id)
        or (current_rows.source_details ->> 'configuration_sha256') is distinct from desired.configuration_sha256
        or (current_rows.source_details ->> 'parents_codes_sha256') is distinct from desired.base_sha256
        or (current_rows.source_details ->> 'child_grouper_url') is distinct from desired.child_grouper_url
        or (current_rows.source_details ->> 'child_grouper_version') is distinct from desired.child_grouper_version
        or (current_rows.source_details -> 'parent_groupers') is distinct from desired.parent_groupers

),

{% else %}

affected as (

    select * from desired

),

{% endif %}

affected_bases as materialized (

    -- the code arrays of the bases the affected rows need, detoasted once here by slicing
    -- ([:]): the per-row binary searches and merges below read each array many times
    select
        base_arrays.child_grouper_url,
        base_arrays.child_grouper_version,
        base_arrays.base_codes[:] as base_codes,
        base_arrays.base_codes_by_system,
        {%- for short_name in ['loinc', 'snomed', 'icd10', 'rxnorm'] %}
        base_arrays.base_{{ short_name }}_codes[:] as base_{{ short_name }}_codes,
        {%- endfor %}
        base_arrays.base_sha256,
        base_arrays.base_has_unit_separator
    from {{ ref('int_rs_grouper_parent_codes') }} as base_arrays
    where exists (
        select 1
        from affected
        where
            affected.child_grouper_url = base_arrays.child_grouper_url
            and affected.child_grouper_version = base_arrays.child_grouper_version
    )

),

extras as materialized (

    -- the added codes each row's base lacks, per system and overall (most rows: a few or none)
    select
        affected.snomed_code,
        affected.jurisdiction_id,
        affected.source_details,
        bases.base_codes,
        bases.base_codes_by_system,
        bases.base_sha256,
        bases.base_has_unit_separator,
        {%- for short_name in ['loinc', 'snomed', 'icd10', 'rxnorm'] %}
        bases.base_{{ short_name }}_codes,
        {{ sorted_missing('affected.added_' ~ short_name ~ '_codes', 'bases.base_' ~ short_name ~ '_codes') }}
            as extra_{{ short_name }}_codes,
        {%- endfor %}
        array(
            select distinct added.code collate "C"
            from unnest(
                affected.added_loinc_codes || affected.added_snomed_codes
                || affected.added_icd10_codes || affected.added_rxnorm_codes
            ) as added (code)
            where bases.base_codes[width_bucket(added.code collate "C", bases.base_codes)] is distinct from added.code
            order by 1
        )::text [] as extra_codes
    from affected
    inner join affected_bases as bases
        on
            affected.child_grouper_url = bases.child_grouper_url
            and affected.child_grouper_version = bases.child_grouper_version

),

merged as materialized (

    select
        snomed_code,
        jurisdiction_id,
        source_details,
        base_sha256,
        {{ sorted_merge('base_codes', 'extra_codes', 'base_has_unit_separator') }} as aggregated_codes,
        case
            when
                cardinality(extra_loinc_codes) + cardinality(extra_snomed_codes)
                + cardinality(extra_icd10_codes) + cardinality(extra_rxnorm_codes) = 0
                then null
            else base_codes_by_system || jsonb_strip_nulls(jsonb_build_object(
                {%- for short_name in ['loinc', 'snomed', 'icd10', 'rxnorm'] %}
                '{{ short_name }}',
                case
                    when cardinality(extra_{{ short_name }}_codes) > 0
                        then to_jsonb({{ sorted_merge('base_' ~ short_name ~ '_codes', 'extra_' ~ short_name ~ '_codes', 'base_has_unit_separator') }})
                end{{ ',' if not loop.last }}
                {%- endfor %}
            ))
        end as merged_codes_by_system,
        base_codes_by_system
    from extras

),

computed as (

    select
        snomed_code,
        jurisdiction_id,
        aggregated_codes,
        coalesce(merged_codes_by_system, base_codes_by_system) as codes_by_system,
        source_details,
        case
            when merged_codes_by_system is null then base_sha256
            else {{ sha256_text('merged_codes_by_system::text') }}
        end as content_sha256
    from merged

)

select
    cast(computed.snomed_code as text) as snomed_code,
    cast(computed.jurisdiction_id as text) as jurisdiction_id,
    cast(computed.aggregated_codes as text []) as aggregated_codes,
    cast(computed.codes_by_system as jsonb) as codes_by_system,
    cast(computed.source_details as jsonb) as source_details,
    cast(computed.content_sha256 as text) as content_sha256,
    {% if is_incremental() -%}
    cast(
        case
            when current_rows.content_sha256 = computed.content_sha256 then current_rows.updated_at
            else now()
        end as timestamptz
    ) as updated_at
    {%- else -%}
    cast(now() as timestamptz) as updated_at
    {%- endif %}
from computed
{% if is_incremental() -%}
left join current_rows
    on
        computed.snomed_code = current_rows.snomed_code
        and computed.jurisdiction_id = current_rows.jurisdiction_id
{%- endif %}
