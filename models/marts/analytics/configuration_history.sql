{#-
    What changed when, per configuration: one row per version recorded by configurations_snapshot,
    saying whether it created, updated, deleted or restored the configuration and which of its
    columns differ from the version before.
-#}
{%- set compared_columns = [
    'jurisdiction_id', 'child_grouper_url', 'child_grouper_version', 'display_name_override',
    'version', 'is_active', 'loinc_codes', 'snomed_codes', 'icd10_codes', 'rxnorm_codes',
] %}
with

snapshot_rows as (

    select
        dbt_scd_id,
        id,
        jurisdiction_id,
        child_grouper_url,
        child_grouper_version,
        display_name_override,
        version,
        is_active,
        loinc_codes,
        snomed_codes,
        icd10_codes,
        rxnorm_codes,
        is_counted,
        exclusion_reason,
        updated_at,
        dbt_valid_from,
        dbt_valid_to,
        coalesce(dbt_is_deleted = 'True', false) as is_deletion
    from {{ ref('configurations_snapshot') }}

),

with_previous as (

    select
        *,
        lag(is_deletion) over configuration_versions as previous_is_deletion,
        {%- for column in compared_columns %}
            lag({{ column }}) over configuration_versions as previous_{{ column }},
        {%- endfor %}
        row_number() over configuration_versions as version_number
    from snapshot_rows
    window configuration_versions as (partition by id order by dbt_valid_from, dbt_scd_id)

)

select
    dbt_scd_id as history_id,
    id as configuration_id,
    version_number,
    jurisdiction_id,
    child_grouper_url,
    child_grouper_version,
    display_name_override,
    version,
    is_active,
    loinc_codes,
    snomed_codes,
    icd10_codes,
    rxnorm_codes,
    is_counted,
    exclusion_reason,
    updated_at,
    dbt_valid_from as changed_at,
    dbt_valid_to as superseded_at,
    dbt_valid_to is null as is_current,
    case
        when is_deletion then 'deleted'
        when version_number = 1 then 'created'
        when previous_is_deletion then 'restored'
        else 'updated'
    end as change_type,
    case
        when version_number = 1 or is_deletion then '{}'::text[]
        else array_remove(array[
            {%- for column in compared_columns %}
                case
                    when {{ column }} is distinct from previous_{{ column }} then '{{ column }}'
                end{{ ',' if not loop.last }}
            {%- endfor %}
        ], null)
    end as changed_columns
from with_previous
