-- The original's check "Refinement Cache Populated", made exact: the cache holds one row per
-- key of a counted configuration, and no other rows.
with

counted_keys as (

    select distinct
        snomed_code,
        jurisdiction_id
    from {{ ref('configurations') }}
    where is_counted

),

cache_keys as (

    select
        snomed_code,
        jurisdiction_id
    from {{ ref('refinement_cache') }}

)

select
    'counted configuration without a cache row' as problem,
    counted_keys.*
from counted_keys
where
    not exists (
        select 1 from cache_keys
        where
            cache_keys.snomed_code = counted_keys.snomed_code
            and cache_keys.jurisdiction_id = counted_keys.jurisdiction_id
    )

union all

select
    'cache row without a counted configuration' as problem,
    cache_keys.*
from cache_keys
where not exists (
    select 1 from counted_keys
    where
        cache_keys.snomed_code = counted_keys.snomed_code and cache_keys.jurisdiction_id = counted_keys.jurisdiction_id
)
