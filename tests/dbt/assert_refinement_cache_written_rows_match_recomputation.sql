-- The cache rows of the jurisdictions the latest write of refinement_cache recomputed, checked
-- like assert_refinement_cache_matches_recomputation (the same macro, restricted to them). The
-- materialization records, per jurisdiction, when it last wrote its rows
-- (refinement_cache__synced_partitions.synced_at, the write's transaction time, the same for
-- every jurisdiction one write touched). Tagged written_rows: a planned configurations-only
-- build (refinery/build_plan.py) runs it instead of the full recomputation, so a one-
-- configuration edit verifies its jurisdiction's rows, not the whole cache; builds that run the
-- full recomputation leave it out.
{{ config(tags=['written_rows']) }}
{%- set synced = incremental_upsert_synced_inputs_relation(ref('refinement_cache')) if execute else none %}
{%- set written -%}
    select synced.partition_key
    from {{ synced }} as synced
    where synced.synced_at = (select max(latest.synced_at) from {{ synced }} as latest)
{%- endset %}
{{ refinement_cache_recomputation_problems(written) }}
