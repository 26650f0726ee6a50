{#-
    Per jurisdiction: its configurations (total, counted, excluded and why), its refinement_cache
    rows and when either last changed. Jurisdictions of the seed without configurations have a
    row of zeros; configurations naming a jurisdiction missing from the seed get a row too
    (is_known_jurisdiction false) so they are visible rather than lost.
-#}
with

jurisdictions as (

    select
        routing_code as jurisdiction_id,
        name as jurisdiction_name,
        state_code
    from {{ ref('jurisdictions') }}

),

configurations as (

    select
        jurisdiction_id,
        is_counted,
        exclusion_reason,
        updated_at
    from {{ ref('configurations') }}

),

configuration_counts as (

    select
        jurisdiction_id,
        count(*) as configurations_total,
        count(*) filter (where is_counted) as configurations_counted,
        count(*) filter (where not is_counted) as configurations_excluded,
        max(updated_at) as last_configuration_change
    from configurations
    group by jurisdiction_id

),

exclusion_reason_counts as (

    select
        jurisdiction_id,
        exclusion_reason,
        count(*) as configuration_count
    from configurations
    where not is_counted
    group by jurisdiction_id, exclusion_reason

),

exclusions as (

    select
        jurisdiction_id,
        jsonb_object_agg(coalesce(exclusion_reason, 'unknown'), configuration_count)
            as excluded_by_reason
    from exclusion_reason_counts
    group by jurisdiction_id

),

cache_rows as (

    select
        jurisdiction_id,
        count(*) as cache_rows,
        max(updated_at) as last_cache_change
    from {{ ref('refinement_cache') }}
    group by jurisdiction_id

),

all_jurisdictions as (

    select jurisdiction_id from jurisdictions
    union
    select jurisdiction_id from configuration_counts
    union
    select jurisdiction_id from cache_rows

)

select
    all_jurisdictions.jurisdiction_id,
    jurisdictions.jurisdiction_name,
    jurisdictions.state_code,
    cache_rows.last_cache_change,
    configuration_counts.last_configuration_change,
    jurisdictions.jurisdiction_id is not null as is_known_jurisdiction,
    coalesce(configuration_counts.configurations_total, 0)::integer as configurations_total,
    coalesce(configuration_counts.configurations_counted, 0)::integer as configurations_counted,
    coalesce(configuration_counts.configurations_excluded, 0)::integer as configurations_excluded,
    coalesce(exclusions.excluded_by_reason, '{}'::jsonb) as excluded_by_reason,
    coalesce(cache_rows.cache_rows, 0)::integer as cache_rows,
    greatest(configuration_counts.last_configuration_change, cache_rows.last_cache_change)
        as last_change
from all_jurisdictions
left join jurisdictions
    on all_jurisdictions.jurisdiction_id = jurisdictions.jurisdiction_id
left join configuration_counts
    on all_jurisdictions.jurisdiction_id = configuration_counts.jurisdiction_id
left join exclusions
    on all_jurisdictions.jurisdiction_id = exclusions.jurisdiction_id
left join cache_rows
    on all_jurisdictions.jurisdiction_id = cache_rows.jurisdiction_id
