-- Recompute every cache row's (system, code) pairs from the serving tables with a different
-- formulation (set operations over unnested codes, no precomputed bases, no binary-search
-- merges) and report every pair missing from or extra in refinement_cache, plus rows whose
-- aggregated_codes or content_sha256 disagree with their own codes_by_system.
with

counted as (

    select * from {{ ref('configurations') }}
    where is_counted

),

parent_codes as (

    select
        refs.child_grouper_url,
        refs.child_grouper_version,
        systems.system_key,
        codes.code
    from {{ ref('tes_condition_grouper_references') }} as refs
    inner join {{ ref('tes_condition_groupers') }} as parents
        on
            refs.parent_grouper_url = parents.canonical_url
            and refs.parent_grouper_version = parents.version
    cross join lateral jsonb_each(parents.codes_by_system) as systems (system_key, system_codes)
    cross join lateral jsonb_array_elements_text(systems.system_codes) as codes (code)
    where refs.child_type = 'reporting_spec_grouper'

),

expected as (

    select
        counted.snomed_code,
        counted.jurisdiction_id,
        parent_codes.system_key,
        parent_codes.code
    from counted
    inner join parent_codes
        on
            counted.child_grouper_url = parent_codes.child_grouper_url
            and counted.child_grouper_version = parent_codes.child_grouper_version
    union
    select
        snomed_code,
        jurisdiction_id,
        'loinc' as system_key,
        unnest(loinc_codes) as code
    from counted
    union
    select
        snomed_code,
        jurisdiction_id,
        'snomed' as system_key,
        unnest(snomed_codes) as code
    from counted
    union
    select
        snomed_code,
        jurisdiction_id,
        'icd10' as system_key,
        unnest(icd10_codes) as code
    from counted
    union
    select
        snomed_code,
        jurisdiction_id,
        'rxnorm' as system_key,
        unnest(rxnorm_codes) as code
    from counted

),

actual as (

    select
        cache_rows.snomed_code,
        cache_rows.jurisdiction_id,
        systems.system_key,
        codes.code
    from {{ ref('refinement_cache') }} as cache_rows
    cross join lateral jsonb_each(cache_rows.codes_by_system) as systems (system_key, system_codes)
    cross join lateral jsonb_array_elements_text(systems.system_codes) as codes (code)

),

missing as (

    select * from expected
    except
    select * from actual

),

unexpected as (

    select * from actual
    except
    select * from expected

),

inconsistent as (

    select
        cache_rows.snomed_code,
        cache_rows.jurisdiction_id,
        null::text as system_key,
        null::text as code
    from {{ ref('refinement_cache') }} as cache_rows
    where
        cache_rows.aggregated_codes is distinct from array(
            select distinct codes.code collate "C"
            from jsonb_each(cache_rows.codes_by_system) as systems (system_key, system_codes)
            cross join lateral jsonb_array_elements_text(systems.system_codes) as codes (code)
            order by 1
        )::text[]
        or cache_rows.content_sha256 is distinct from {{ sha256_text('cache_rows.codes_by_system::text') }}

)

select
    'missing from cache' as problem,
    missing.snomed_code,
    missing.jurisdiction_id,
    missing.system_key,
    missing.code
from missing
union all
select
    'not expected in cache' as problem,
    unexpected.snomed_code,
    unexpected.jurisdiction_id,
    unexpected.system_key,
    unexpected.code
from unexpected
union all
select
    'aggregated_codes or content_sha256 disagree with codes_by_system' as problem,
    inconsistent.snomed_code,
    inconsistent.jurisdiction_id,
    inconsistent.system_key,
    inconsistent.code
from inconsistent
