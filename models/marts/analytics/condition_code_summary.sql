{#-
    Per condition grouper and TES release: how many codes it holds per code system and how many
    reporting specification (RS) and additional context groupers it references.
-#}
with

condition_groupers as (

    select
        canonical_url,
        version,
        display_name,
        snomed_codes,
        loinc_codes,
        icd10_codes,
        rxnorm_codes,
        cvx_codes,
        cpt_codes,
        codes_by_system
    from {{ ref('tes_condition_groupers') }}

),

references_by_type as (

    select
        parent_grouper_url,
        parent_grouper_version,
        count(*) filter (where child_type = 'reporting_spec_grouper') as rs_grouper_count,
        count(*) filter (
            where child_type = 'additional_context_grouper'
        ) as additional_context_grouper_count
    from {{ ref('tes_condition_grouper_references') }}
    group by parent_grouper_url, parent_grouper_version

),

system_counts as (

    select
        condition_groupers.canonical_url,
        condition_groupers.version,
        jsonb_object_agg(code_systems.key, jsonb_array_length(code_systems.value))
            as code_count_by_system,
        sum(jsonb_array_length(code_systems.value)) as code_count
    from condition_groupers
    cross join lateral jsonb_each(condition_groupers.codes_by_system) as code_systems
    group by condition_groupers.canonical_url, condition_groupers.version

)

select
    condition_groupers.canonical_url,
    condition_groupers.version,
    condition_groupers.display_name,
    cardinality(condition_groupers.snomed_codes) as snomed_code_count,
    cardinality(condition_groupers.loinc_codes) as loinc_code_count,
    cardinality(condition_groupers.icd10_codes) as icd10_code_count,
    cardinality(condition_groupers.rxnorm_codes) as rxnorm_code_count,
    cardinality(condition_groupers.cvx_codes) as cvx_code_count,
    cardinality(condition_groupers.cpt_codes) as cpt_code_count,
    coalesce(system_counts.code_count, 0)::integer as code_count,
    coalesce(system_counts.code_count_by_system, '{}'::jsonb) as code_count_by_system,
    coalesce(references_by_type.rs_grouper_count, 0)::integer as rs_grouper_count,
    coalesce(references_by_type.additional_context_grouper_count, 0)::integer
        as additional_context_grouper_count
from condition_groupers
left join system_counts
    on
        condition_groupers.canonical_url = system_counts.canonical_url
        and condition_groupers.version = system_counts.version
left join references_by_type
    on
        condition_groupers.canonical_url = references_by_type.parent_grouper_url
        and condition_groupers.version = references_by_type.parent_grouper_version
