{{ config(severity='warn') }}
-- Configurations that do not count for refinement_cache, with the reason; one bad row never
-- blocks the build.
select
    id,
    jurisdiction_id,
    child_grouper_url,
    child_grouper_version,
    exclusion_reason,
    superseded_by_configuration_id
from {{ ref('configurations') }}
where not is_counted
