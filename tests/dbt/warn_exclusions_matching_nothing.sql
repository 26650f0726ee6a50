{{ config(severity='warn') }}
-- Exclusions of counted configurations that remove nothing: no code of the row's base (its
-- parents' codes) or of the configuration's additions matches them (a typo, a code TES
-- dropped, or the wrong system). The exclusion is harmless; the report says it does nothing.
with

excluding as (

    select
        configurations.configuration_id,
        configurations.snomed_code,
        configurations.jurisdiction_id,
        configurations.excluded_bare_codes,
        configurations.excluded_system_codes,
        bases.base_codes_by_system,
        configurations.added_loinc_codes,
        configurations.added_snomed_codes,
        configurations.added_icd10_codes,
        configurations.added_rxnorm_codes
    from {{ ref('int_configurations_evaluated') }} as configurations
    inner join {{ ref('int_rs_grouper_parent_codes') }} as bases
        on
            configurations.child_grouper_url = bases.child_grouper_url
            and configurations.child_grouper_version = bases.child_grouper_version
    where
        configurations.is_counted
        and cardinality(configurations.excluded_bare_codes) + cardinality(configurations.excluded_system_codes) > 0

),

row_pairs as (

    select
        excluding.configuration_id,
        listed.system_key,
        listed.code
    from excluding
    cross join lateral (
        select
            systems.system_key,
            system_codes.code
        from jsonb_each(excluding.base_codes_by_system) as systems (system_key, codes)
        cross join lateral jsonb_array_elements_text(systems.codes) as system_codes (code)
        union all
        select
            'loinc' as system_key,
            unnest(excluding.added_loinc_codes) as code
        union all
        select
            'snomed' as system_key,
            unnest(excluding.added_snomed_codes) as code
        union all
        select
            'icd10' as system_key,
            unnest(excluding.added_icd10_codes) as code
        union all
        select
            'rxnorm' as system_key,
            unnest(excluding.added_rxnorm_codes) as code
    ) as listed

),

exclusions as (

    select
        excluding.configuration_id,
        excluding.snomed_code,
        excluding.jurisdiction_id,
        bare.entry as exclusion,
        false as has_system
    from excluding
    cross join lateral unnest(excluding.excluded_bare_codes) as bare (entry)
    union all
    select
        excluding.configuration_id,
        excluding.snomed_code,
        excluding.jurisdiction_id,
        keyed.entry as exclusion,
        true as has_system
    from excluding
    cross join lateral unnest(excluding.excluded_system_codes) as keyed (entry)

)

select
    exclusions.configuration_id,
    exclusions.snomed_code,
    exclusions.jurisdiction_id,
    exclusions.exclusion
from exclusions
where not exists (
    select 1
    from row_pairs
    where
        row_pairs.configuration_id = exclusions.configuration_id
        and (
            (not exclusions.has_system and row_pairs.code = exclusions.exclusion)
            or (exclusions.has_system and row_pairs.system_key || '|' || row_pairs.code = exclusions.exclusion)
        )
)
