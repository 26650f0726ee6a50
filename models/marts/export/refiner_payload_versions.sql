{{ config(indexes=[{'columns': ['jurisdiction_id', 'condition_grouper_url', 'version'], 'unique': true}]) }}
{#-
    Every payload version ever exported: one row per (jurisdiction_id, condition_grouper_url,
    version), numbered from 1 in the order refiner_payloads_snapshot recorded them (a payload
    whose content changed got the next version; an unchanged one kept its row, hence its
    version). current_version is the pair's version `current.json` names now: the version of its
    open snapshot row, null once the condition is no longer configured for the jurisdiction.
-#}
with

history as (

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
        code_count,
        content_sha256,
        dbt_valid_from,
        dbt_valid_to,
        row_number() over (
            partition by jurisdiction_id, condition_grouper_url
            order by dbt_valid_from asc, dbt_scd_id asc
        ) as version_number
    from {{ ref('refiner_payloads_snapshot') }}

),

numbered as (

    select
        *,
        max(case when dbt_valid_to is null then version_number end) over (
            partition by jurisdiction_id, condition_grouper_url
        ) as current_version
    from history

)

select
    jurisdiction_id,
    condition_grouper_url,
    version_number::integer as version,  -- noqa: RF04
    current_version::integer as current_version,
    condition_grouper_uuid,
    condition_grouper_version,
    condition_name,
    condition_folder_name,
    included_condition_rsg_codes,
    code_system_sets,
    sections,
    code_count,
    content_sha256,
    dbt_valid_from as valid_from,
    dbt_valid_to as valid_to,
    coalesce(version_number = current_version, false) as is_current
from numbered
