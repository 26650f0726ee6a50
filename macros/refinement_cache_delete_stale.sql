{#-
    Post-hook of refinement_cache (runs inside the model's transaction, after the upsert): delete
    the rows whose key no counted configuration reaches any more (configuration deleted,
    deactivated, superseded onto another key, or its RS grouper unloaded / left without a
    parent). After the upsert every counted key has its row, so stale rows exist exactly when
    the table holds more rows than there are counted keys: two counts gate the anti-join, which
    a build that removed nothing (nearly every build) then skips.
-#}
{% macro refinement_cache_delete_stale() -%}
    delete from {{ this }} as cache
    where
        (select count(*) from {{ this }})
        > (select count(*) from {{ ref('int_configurations_evaluated') }} where is_counted)
        and not exists (
            select 1
            from {{ ref('int_configurations_evaluated') }} as evaluated
            where
                evaluated.is_counted
                and evaluated.snomed_code = cache.snomed_code
                and evaluated.jurisdiction_id = cache.jurisdiction_id
        )
{%- endmacro %}
