{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key='jurisdiction_id',
    on_schema_change='fail',
    indexes=[{'columns': ['jurisdiction_id', 'condition_grouper_url'], 'unique': true}],
    post_hook=[
        "delete from {{ this }} where jurisdiction_id not in"
        ~ " (select jurisdiction_id from {{ ref('int_refiner_payload_inputs_fingerprinted') }})"
    ],
) }}
{#-
    What `refinery export` writes for each configured condition of each jurisdiction: one row
    per (jurisdiction_id, condition_grouper_url), the content of that condition's `active.json`
    (docs/export.md). This project's configurations are per RS grouper, the Refiner's per
    condition grouper: each refinement_cache row goes to the condition of its RS grouper
    (int_rs_grouper_condition_groupers), and a payload is the union of its rows'
    code_system_sets (each code already under its key with its TES display and system), one
    entry per code per key. content_sha256 fingerprints everything a version folder holds, so
    refiner_payloads_snapshot opens a new version exactly when a payload changes.

    Incremental per jurisdiction (dbt's delete+insert on jurisdiction_id): a build rebuilds
    the jurisdictions whose inputs_fingerprint (int_refiner_payload_inputs_fingerprinted) is
    not the one their rows carry, so one edited configuration rewrites one jurisdiction's
    payloads instead of unnesting every cache row of every jurisdiction; the post-hook deletes
    the rows of jurisdictions left with no payload. The fingerprint also carries the MD5 of
    this model's SQL (macro model_sql_md5), so editing it rebuilds every jurisdiction without
    a --full-refresh; a change in a macro it calls still needs one.
-#}
with

inputs as (

    -- the jurisdictions to (re)build, with the fingerprint their rows will carry (their
    -- inputs' and this model's SQL's): all of them in a full build, else those whose
    -- fingerprint differs from the one their rows carry
    select
        fingerprints.jurisdiction_id,
        fingerprints.inputs_fingerprint || '/{{ model_sql_md5() }}' as inputs_fingerprint
    from {{ ref('int_refiner_payload_inputs_fingerprinted') }} as fingerprints
    {%- if is_incremental() %}
        where not exists (
            select 1
            from {{ this }} as written
            where
                written.jurisdiction_id = fingerprints.jurisdiction_id
                and written.inputs_fingerprint
                = fingerprints.inputs_fingerprint || '/{{ model_sql_md5() }}'
        )
    {%- endif %}

),

cache_rows as (

    select
        refinement_cache.jurisdiction_id,
        refinement_cache.snomed_code,
        refinement_cache.code_system_sets,
        refinement_cache.source_details ->> 'child_grouper_url' as rs_grouper_url,
        refinement_cache.source_details ->> 'child_grouper_version' as rs_grouper_version
    from {{ ref('refinement_cache') }} as refinement_cache
    inner join inputs
        on refinement_cache.jurisdiction_id = inputs.jurisdiction_id

),

payload_members as (

    select
        cache_rows.jurisdiction_id,
        cache_rows.snomed_code,
        cache_rows.code_system_sets,
        conditions.condition_grouper_url,
        conditions.condition_grouper_version,
        conditions.condition_name
    from cache_rows
    inner join {{ ref('int_rs_grouper_condition_groupers') }} as conditions
        on
            cache_rows.rs_grouper_url = conditions.rs_grouper_url
            and cache_rows.rs_grouper_version = conditions.rs_grouper_version

),

member_codes as (

    -- every entry of every member row's code_system_sets (the cache has already put each code
    -- under its key with its display and system: docs/codes.md)
    select
        payload_members.jurisdiction_id,
        payload_members.condition_grouper_url,
        key_sets.set_key,
        entries.code_entry ->> 'code' as code,
        coalesce(entries.code_entry ->> 'display', '') as display,
        entries.code_entry ->> 'system' as code_system
    from payload_members
    cross join lateral jsonb_each(payload_members.code_system_sets) as key_sets (set_key, set_entries)
    cross join lateral jsonb_array_elements(key_sets.set_entries) as entries (code_entry)

),

distinct_codes as (

    -- one entry per code per key: a non-empty display first, then the lowest display and system
    select distinct on (jurisdiction_id, condition_grouper_url, set_key, code)
        jurisdiction_id,
        condition_grouper_url,
        set_key,
        code,
        display,
        code_system
    from member_codes
    order by
        jurisdiction_id asc,
        condition_grouper_url asc,
        set_key asc,
        code asc,
        display = '' asc,
        display collate "C" asc,
        code_system collate "C" asc

),

sets as (

    select
        jurisdiction_id,
        condition_grouper_url,
        set_key,
        count(*) as code_count,
        jsonb_agg(
            jsonb_build_object('code', code, 'display', display, 'system', code_system)
            order by code collate "C", code_system collate "C"
        ) as entries
    from distinct_codes
    group by jurisdiction_id, condition_grouper_url, set_key

),

code_system_sets as (

    select
        jurisdiction_id,
        condition_grouper_url,
        sum(code_count) as code_count,
        jsonb_build_object(
            'loinc', coalesce(jsonb_agg(entries) filter (where set_key = 'loinc') -> 0, '[]'::jsonb),
            'snomed', coalesce(jsonb_agg(entries) filter (where set_key = 'snomed') -> 0, '[]'::jsonb),
            'rxnorm', coalesce(jsonb_agg(entries) filter (where set_key = 'rxnorm') -> 0, '[]'::jsonb),
            'icd10', coalesce(jsonb_agg(entries) filter (where set_key = 'icd10') -> 0, '[]'::jsonb),
            'cvx', coalesce(jsonb_agg(entries) filter (where set_key = 'cvx') -> 0, '[]'::jsonb),
            'other', coalesce(jsonb_agg(entries) filter (where set_key = 'other') -> 0, '[]'::jsonb)
        ) as code_system_sets
    from sets
    group by jurisdiction_id, condition_grouper_url

),

payloads as (

    select
        jurisdiction_id,
        condition_grouper_url,
        -- the latest release among the members (they differ only when a jurisdiction configured
        -- RS grouper versions of different releases)
        (array_agg(
            condition_grouper_version
            order by {{ release_order('condition_grouper_version') }} desc, condition_grouper_version collate "C" desc
        ))[1] as condition_grouper_version,
        (array_agg(
            condition_name
            order by {{ release_order('condition_grouper_version') }} desc, condition_grouper_version collate "C" desc
        ))[1] as condition_name,
        array_agg(distinct snomed_code collate "C" order by snomed_code collate "C")::text[]
            as included_condition_rsg_codes
    from payload_members
    group by jurisdiction_id, condition_grouper_url

),

sections as (

    select
        jsonb_agg(
            jsonb_build_object(
                'include', include,
                'narrative', narrative,
                'action', action,
                'name', name,
                'code', code,
                'versions', to_jsonb(string_to_array(versions, '|')),
                'section_type', section_type
            )
            order by code collate "C"
        ) as sections
    from {{ ref('eicr_sections') }}

),

assembled as (

    select
        payloads.jurisdiction_id,
        payloads.condition_grouper_url,
        payloads.condition_grouper_version,
        payloads.condition_name,
        payloads.included_condition_rsg_codes,
        inputs.inputs_fingerprint,
        lower(substring(payloads.condition_grouper_url from '([^/]+)$')) as condition_grouper_uuid,
        regexp_replace(normalize(payloads.condition_name, nfkd), '[^A-Za-z0-9_]', '', 'g')  -- noqa: RF02
            as condition_folder_name,
        coalesce(code_system_sets.code_system_sets, jsonb_build_object(
            'loinc', '[]'::jsonb, 'snomed', '[]'::jsonb, 'rxnorm', '[]'::jsonb,
            'icd10', '[]'::jsonb, 'cvx', '[]'::jsonb, 'other', '[]'::jsonb
        )) as code_system_sets,
        coalesce(code_system_sets.code_count, 0) as code_count,
        coalesce(sections.sections, '[]'::jsonb) as sections
    from payloads
    inner join inputs
        on payloads.jurisdiction_id = inputs.jurisdiction_id
    left join code_system_sets
        on
            payloads.jurisdiction_id = code_system_sets.jurisdiction_id
            and payloads.condition_grouper_url = code_system_sets.condition_grouper_url
    cross join sections

)

select
    jurisdiction_id,
    condition_grouper_url,
    condition_grouper_uuid,
    condition_grouper_version,
    condition_name,
    condition_folder_name,
    included_condition_rsg_codes,
    code_system_sets,
    sections,
    inputs_fingerprint,
    code_count::bigint as code_count,
    {{ sha256_text(
        "jsonb_build_array(condition_grouper_url, condition_grouper_version, condition_name,"
        ~ " to_jsonb(included_condition_rsg_codes), code_system_sets, sections)::text"
    ) }} as content_sha256
from assembled
