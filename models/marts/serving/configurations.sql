{{ config(indexes=[{'columns': ['id'], 'unique': true}, {'columns': ['snomed_code', 'jurisdiction_id']}]) }}
{#-
    Every configuration of the source snapshot, whether it counts for refinement_cache and, when
    not, why: inactive, unknown_jurisdiction, grouper_not_loaded, grouper_has_no_snomed_code,
    grouper_has_no_parent or superseded_by_newer_configuration.
-#}
select
    configuration_id as id,
    jurisdiction_id,
    child_grouper_url,
    child_grouper_version,
    display_name_override,
    configuration_version as version,  -- noqa: RF04
    added_loinc_codes as loinc_codes,
    added_snomed_codes as snomed_codes,
    added_icd10_codes as icd10_codes,
    added_rxnorm_codes as rxnorm_codes,
    excluded_codes,
    is_active,
    created_by,
    created_at,
    updated_at,
    snomed_code,
    is_counted,
    exclusion_reason,
    superseded_by_configuration_id,
    configuration_sha256
from {{ ref('int_configurations_evaluated') }}
