{#-
    Per jurisdiction, the fingerprint of everything its refinement_cache rows are built from:
    the counted configurations' (snomed_code, cache_source_sha256) pairs (cache_source_sha256
    covers the configuration's content, its RS grouper and the parents' codes). The cache's
    materialization compares these few hundred rows with the ones it last wrote from
    (inputs_fingerprint) and diffs only the jurisdictions whose fingerprint changed.
-#}
select
    jurisdiction_id,
    count(*) as counted_configurations,
    {{ rows_fingerprint(['snomed_code', 'cache_source_sha256']) }} as inputs_fingerprint
from {{ ref('int_configurations_evaluated') }}
where is_counted
group by jurisdiction_id
