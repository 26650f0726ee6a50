{#-
    A SQL query returning the keys (snomed_code, jurisdiction_id) the latest write of
    refinement_cache touched: the scope of the tests tagged written_rows. The materialization
    records, per jurisdiction, when it last wrote (refinement_cache__synced_partitions.synced_at,
    the write's transaction time) and every row it writes carries that time (written_at). The
    keys are, in the jurisdictions that write recomputed:
    - the rows it wrote (written_at is the write's time);
    - the keys only one side holds: a counted configuration's key with no cache row (a row the
      write should have written), a cache row no counted configuration reaches (a row it should
      have deleted); found by comparing keys alone, so the checks read the rows written, not
      every row of their jurisdictions.
-#}
{% macro refinement_cache_written_keys() -%}
    {%- set synced = incremental_upsert_synced_inputs_relation(ref('refinement_cache')) if execute else none -%}
    select written.snomed_code, written.jurisdiction_id
    from {{ ref('refinement_cache') }} as written
    where written.written_at = (select max(latest.synced_at) from {{ synced }} as latest)
    union
    select
        coalesce(counted.snomed_code, cached.snomed_code) as snomed_code,
        coalesce(counted.jurisdiction_id, cached.jurisdiction_id) as jurisdiction_id
    from (
        select configurations.snomed_code, configurations.jurisdiction_id
        from {{ ref('configurations') }} as configurations
        where configurations.is_counted
    ) as counted
    full join (
        select cache_keys.snomed_code, cache_keys.jurisdiction_id
        from {{ ref('refinement_cache') }} as cache_keys
    ) as cached
        on
            counted.snomed_code = cached.snomed_code
            and counted.jurisdiction_id = cached.jurisdiction_id
    where
        (counted.snomed_code is null or cached.snomed_code is null)
        and coalesce(counted.jurisdiction_id, cached.jurisdiction_id) in (
            select synced.partition_key
            from {{ synced }} as synced
            where synced.synced_at = (select max(latest.synced_at) from {{ synced }} as latest)
        )
{%- endmacro %}
