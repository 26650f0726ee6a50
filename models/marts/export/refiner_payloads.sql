{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key=['jurisdiction_id', 'condition_grouper_url'],
    on_schema_change='fail',
    indexes=[{'columns': ['jurisdiction_id', 'condition_grouper_url'], 'unique': true}],
    post_hook=[
        "delete from {{ this }} where (jurisdiction_id, condition_grouper_url) not in"
        ~ " (select jurisdiction_id, condition_grouper_url"
        ~ " from {{ ref('int_refiner_payload_inputs_fingerprinted') }})"
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

    Incremental per payload (dbt's delete+insert on jurisdiction_id, condition_grouper_url): a
    build rebuilds the payloads whose inputs_fingerprint (int_refiner_payload_inputs_fingerprinted)
    is not the one their row carries, so one edited configuration rewrites its condition's
    payload and a new TES release the payloads of the conditions it changed, instead of
    unnesting every cache row of every jurisdiction; the post-hook deletes the payloads no
    cache row belongs to any more. The fingerprint also carries the MD5 of this model's SQL
    (macro model_sql_md5), so editing it rebuilds every payload without a --full-refresh; a
    change in a macro it calls still needs one.
-#}
with

inputs as (

    -- the payloads to (re)build, with the fingerprint their rows will carry (their inputs'
    -- and this model's SQL's): all of them in a full build, else those whose fingerprint
    -- differs from the one their row carries
    select
        fingerprints.jurisdiction_id,
        fingerprints.condition_grouper_url,
        fingerprints.inputs_fingerprint || '/{{ model_sql_md5() }}' as inputs_fingerprint
    from {{ ref('int_refiner_payload_inputs_fingerprinted') }} as fingerprints
    {%- if is_incremental() %}
        where not exists (
            select 1
            from {{ this }} as written
            where
                written.jurisdiction_id = fingerprints.jurisdiction_id
                and written.condition_grouper_url = fingerprints.condition_grouper_url
                and written.inputs_fingerprint
                = fingerprints.inputs_fingerprint || '/{{ model_sql_md5() }}'
        )
    {%- endif %}

),

payload_members as (

    -- the cache rows of the payloads to build, with their condition
    select
        members.jurisdiction_id,
        members.snomed_code,
        members.code_system_sets,
        members.condition_grouper_url,
        members.condition_grouper_version,
        members.condition_name,
        inputs.inputs_fingerprint
    from {{ ref('int_refiner_payload_members') }} as members
    inner join inputs
        on
            members.jurisdiction_id = inputs.jurisdiction_id
            and members.condition_grouper_url = inputs.condition_grouper_url

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
            as included_condition_rsg_codes,
        -- the members' code_system_sets (most payloads have one member)
        array_agg(code_system_sets) as member_sets,
        min(inputs_fingerprint) as inputs_fingerprint
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

    -- per payload, one entry per code per key: a non-empty display first, then the lowest
    -- display and system; entries sorted by code then system. Each payload's few hundred
    -- entries are sorted on their own (not millions in one sort), in a sub-select attached to
    -- its row (no join after it that a misestimate could turn into re-running it per row), and
    -- an entry is the cache's {code, display, system} object as it is.
    select
        payloads.jurisdiction_id,
        payloads.condition_grouper_url,
        payloads.condition_grouper_version,
        payloads.condition_name,
        payloads.included_condition_rsg_codes,
        payloads.inputs_fingerprint,
        lower(substring(payloads.condition_grouper_url from '([^/]+)$')) as condition_grouper_uuid,
        regexp_replace(normalize(payloads.condition_name, nfkd), '[^A-Za-z0-9_]', '', 'g')  -- noqa: RF02
            as condition_folder_name,
        jsonb_build_object(
            'loinc', '[]'::jsonb, 'snomed', '[]'::jsonb, 'rxnorm', '[]'::jsonb,
            'icd10', '[]'::jsonb, 'cvx', '[]'::jsonb, 'other', '[]'::jsonb
        ) || coalesce(per_payload.entries_by_key, '{}'::jsonb) as code_system_sets,
        coalesce(per_payload.code_count, 0) as code_count,
        coalesce(sections.sections, '[]'::jsonb) as sections
    from payloads
    cross join sections
    cross join lateral (  -- noqa: ST05
        select
            sum(per_key.code_count) as code_count,
            jsonb_object_agg(per_key.set_key, per_key.entries) as entries_by_key
        from (
            select
                distinct_codes.set_key,
                count(*) as code_count,
                jsonb_agg(
                    distinct_codes.code_entry
                    order by distinct_codes.code, distinct_codes.code_system
                ) as entries
            from (
                select distinct on (key_sets.set_key, entries.code_entry ->> 'code')
                    key_sets.set_key,
                    entries.code_entry,
                    entries.code_entry ->> 'code' collate "C" as code,
                    entries.code_entry ->> 'system' collate "C" as code_system
                from unnest(payloads.member_sets) as members (sets)
                cross join lateral jsonb_each(members.sets) as key_sets (set_key, set_entries)
                cross join lateral jsonb_array_elements(key_sets.set_entries) as entries (code_entry)
                order by
                    key_sets.set_key asc,
                    entries.code_entry ->> 'code' asc,
                    entries.code_entry ->> 'display' = '' asc,
                    entries.code_entry ->> 'display' collate "C" asc,
                    entries.code_entry ->> 'system' collate "C" asc
            ) as distinct_codes
            group by distinct_codes.set_key
        ) as per_key
    ) as per_payload

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
