-- The cache rows of the jurisdictions the latest write of refinement_cache recomputed, checked
-- like assert_code_system_sets_agree (the same macro, restricted to them, as
-- assert_refinement_cache_written_rows_match_recomputation is). Tagged written_rows: a planned
-- configurations-only build runs it instead of the whole-cache check.
{{ config(tags=['written_rows']) }}
{%- set synced = incremental_upsert_synced_inputs_relation(ref('refinement_cache')) if execute else none %}
{%- set written -%}
    select synced.partition_key
    from {{ synced }} as synced
    where synced.synced_at = (select max(latest.synced_at) from {{ synced }} as latest)
{%- endset %}
{{ code_system_sets_problems(written) }}
