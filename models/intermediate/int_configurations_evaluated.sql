{{ config(
    pre_hook=['{{ tune_session() }}'],
    materialized='table',
    post_hook=['{{ analyze_relation() }}'],
    indexes=[
        {'columns': ['configuration_id'], 'unique': true},
        {'columns': ['jurisdiction_id', 'snomed_code']},
    ],
) }}
{#-
    Every configuration with the verdict of rule 4/5: whether it counts for the cache and, when
    not, the first reason why. Several counted candidates for one (snomed_code, jurisdiction_id):
    the latest updated_at wins, ties by the highest id; the others are superseded. A counted
    configuration also carries cache_source_sha256, the fingerprint of everything its cache row
    is built from (refinement_cache.source_sha256).
-#}
with

configurations as (

    select * from {{ ref('stg_refiner__configurations') }}

),

jurisdictions as (

    select distinct cast(routing_code as text) as routing_code
    from {{ ref('jurisdictions') }}

),

rs_groupers as (

    select
        canonical_url,
        version,
        snomed_code
    from {{ ref('stg_tes__valuesets') }}
    where grouper_type = 'reporting_spec_grouper'

),

bases as (

    select
        child_grouper_url,
        child_grouper_version,
        base_source_sha256
    from {{ ref('int_rs_grouper_parent_codes') }}

),

checked as (

    select
        configurations.*,
        rs_groupers.snomed_code,
        bases.base_source_sha256,
        case
            when not configurations.is_active then 'inactive'
            when jurisdictions.routing_code is null then 'unknown_jurisdiction'
            when rs_groupers.canonical_url is null then 'grouper_not_loaded'
            when rs_groupers.snomed_code is null then 'grouper_has_no_snomed_code'
            when bases.child_grouper_url is null then 'grouper_has_no_parent'
        end as ineligibility_reason
    from configurations
    left join jurisdictions
        on configurations.jurisdiction_id = jurisdictions.routing_code
    left join rs_groupers
        on
            configurations.child_grouper_url = rs_groupers.canonical_url
            and configurations.child_grouper_version = rs_groupers.version
    left join bases
        on
            configurations.child_grouper_url = bases.child_grouper_url
            and configurations.child_grouper_version = bases.child_grouper_version

),

ranked as (

    select
        *,
        first_value(configuration_id) over candidates as winning_configuration_id
    from checked
    window candidates as (
        partition by ineligibility_reason is null, snomed_code, jurisdiction_id
        order by updated_at desc nulls last, configuration_id desc
    )

)

select
    -- the columns every cache diff reads come first: a scan stops decoding each row there
    ineligibility_reason is null and winning_configuration_id = configuration_id as is_counted,
    snomed_code,
    jurisdiction_id,
    case
        when ineligibility_reason is null and winning_configuration_id = configuration_id
            then {{ sha256_text(
                "configuration_id::text || chr(31) || configuration_sha256 || chr(31) || base_source_sha256"
            ) }}
    end as cache_source_sha256,
    configuration_id,
    child_grouper_url,
    child_grouper_version,
    display_name_override,
    configuration_version,
    added_loinc_codes,
    added_snomed_codes,
    added_icd10_codes,
    added_rxnorm_codes,
    is_active,
    created_by,
    created_at,
    updated_at,
    configuration_sha256,
    coalesce(
        ineligibility_reason,
        case when winning_configuration_id <> configuration_id then 'superseded_by_newer_configuration' end
    ) as exclusion_reason,
    case
        when ineligibility_reason is null and winning_configuration_id <> configuration_id
            then winning_configuration_id
    end as superseded_by_configuration_id
from ranked
