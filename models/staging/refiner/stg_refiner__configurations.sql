{#-
    The Refiner's configurations, one row per configuration, added and excluded codes cleaned
    (trimmed, blanks and duplicates dropped, sorted) and a hash of everything the cache row
    depends on. An exclusion is kept as written (`94500-6`, `loinc|94500-6`,
    `http://loinc.org|94500-6`); int_configurations_evaluated resolves its system.
-#}
with

source as (

    select
        id,
        jurisdiction_id,
        child_grouper_url,
        child_grouper_version,
        display_name_override,
        version,
        loinc_codes,
        snomed_codes,
        icd10_codes,
        rxnorm_codes,
        excluded_codes,
        is_active,
        created_by,
        created_at,
        updated_at
    from {{ source('refiner', 'configurations') }}

),

renamed as (

    select
        cast(id as bigint) as configuration_id,
        cast(trim(jurisdiction_id) as text) as jurisdiction_id,
        cast(child_grouper_url as text) as child_grouper_url,
        cast(child_grouper_version as text) as child_grouper_version,
        cast(display_name_override as text) as display_name_override,
        cast(version as integer) as configuration_version,
        {{ clean_code_array('loinc_codes') }} as added_loinc_codes,
        {{ clean_code_array('snomed_codes') }} as added_snomed_codes,
        {{ clean_code_array('icd10_codes') }} as added_icd10_codes,
        {{ clean_code_array('rxnorm_codes') }} as added_rxnorm_codes,
        {{ clean_code_array('excluded_codes') }} as excluded_codes,
        coalesce(is_active, false) as is_active,
        cast(created_by as text) as created_by,
        cast(created_at as timestamptz) as created_at,
        cast(updated_at as timestamptz) as updated_at
    from source

),

fingerprinted as (

    select
        *,
        cast(jsonb_build_array(
            configuration_id,
            jurisdiction_id,
            child_grouper_url,
            child_grouper_version,
            added_loinc_codes,
            added_snomed_codes,
            added_icd10_codes,
            added_rxnorm_codes,
            excluded_codes
        ) as text) as cache_inputs_text
    from renamed

)

select
    configuration_id,
    jurisdiction_id,
    child_grouper_url,
    child_grouper_version,
    display_name_override,
    configuration_version,
    added_loinc_codes,
    added_snomed_codes,
    added_icd10_codes,
    added_rxnorm_codes,
    excluded_codes,
    is_active,
    created_by,
    created_at,
    updated_at,
    {{ sha256_text('cache_inputs_text') }} as configuration_sha256
from fingerprinted
