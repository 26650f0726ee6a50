-- No cache row holds a code its configuration excludes: a bare exclusion in any system, a
-- `system|code` one in that system (aggregated_codes too, when no other system keeps the code).
with

excluding as (

    select
        snomed_code,
        jurisdiction_id,
        excluded_bare_codes,
        excluded_system_codes
    from {{ ref('int_configurations_evaluated') }}
    where is_counted and cardinality(excluded_bare_codes) + cardinality(excluded_system_codes) > 0

),

kept_pairs as (

    select
        excluding.snomed_code,
        excluding.jurisdiction_id,
        excluding.excluded_bare_codes,
        excluding.excluded_system_codes,
        systems.system_key,
        system_codes.code
    from excluding
    inner join {{ ref('refinement_cache') }} as cache_rows
        on
            excluding.snomed_code = cache_rows.snomed_code
            and excluding.jurisdiction_id = cache_rows.jurisdiction_id
    cross join lateral jsonb_each(cache_rows.codes_by_system) as systems (system_key, codes)
    cross join lateral jsonb_array_elements_text(systems.codes) as system_codes (code)

),

aggregated as (

    select
        excluding.snomed_code,
        excluding.jurisdiction_id,
        listed.code
    from excluding
    inner join {{ ref('refinement_cache') }} as cache_rows
        on
            excluding.snomed_code = cache_rows.snomed_code
            and excluding.jurisdiction_id = cache_rows.jurisdiction_id
    cross join lateral unnest(cache_rows.aggregated_codes) as listed (code)
    where listed.code = any(excluding.excluded_bare_codes)

)

select
    snomed_code,
    jurisdiction_id,
    system_key || '|' || code as excluded_code_kept
from kept_pairs
where
    code = any(excluded_bare_codes)
    or (system_key || '|' || code) = any(excluded_system_codes)
union all
select
    snomed_code,
    jurisdiction_id,
    code as excluded_code_kept
from aggregated
