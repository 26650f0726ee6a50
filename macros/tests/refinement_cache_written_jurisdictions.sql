{#-
    A SQL query returning the jurisdiction_ids the latest write of refinement_cache recomputed:
    the materialization records, per jurisdiction, when it last wrote its rows
    (refinement_cache__synced_partitions.synced_at, the write's transaction time, the same for
    every jurisdiction one write touched). The scope of the tests tagged written_rows.
-#}
{% macro refinement_cache_written_jurisdictions() -%}
    {%- set synced = incremental_upsert_synced_inputs_relation(ref('refinement_cache')) if execute else none -%}
    select synced.partition_key
    from {{ synced }} as synced
    where synced.synced_at = (select max(latest.synced_at) from {{ synced }} as latest)
{%- endmacro %}
