{{ config(severity='warn') }}
-- Codes a configuration both adds and excludes: the exclusion wins (the code is not in its
-- cache row), which is rarely what the author meant.
with

added as (

    select
        configuration_id,
        jurisdiction_id,
        child_grouper_url,
        excluded_bare_codes,
        excluded_system_codes,
        listed.system_key,
        listed.code
    from {{ ref('int_configurations_evaluated') }}
    cross join lateral (
        select
            'loinc' as system_key,
            unnest(added_loinc_codes) as code
        union all
        select
            'snomed' as system_key,
            unnest(added_snomed_codes) as code
        union all
        select
            'icd10' as system_key,
            unnest(added_icd10_codes) as code
        union all
        select
            'rxnorm' as system_key,
            unnest(added_rxnorm_codes) as code
    ) as listed
    where cardinality(excluded_bare_codes) + cardinality(excluded_system_codes) > 0

)

select
    configuration_id,
    jurisdiction_id,
    child_grouper_url,
    system_key,
    code
from added
where
    code = any(excluded_bare_codes)
    or (system_key || '|' || code) = any(excluded_system_codes)
