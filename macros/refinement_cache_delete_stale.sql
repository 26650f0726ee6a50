{#-
    Post-hook of refinement_cache (runs inside the model's transaction): delete the rows whose
    key no counted configuration reaches any more (configuration deleted, deactivated,
    superseded onto another key, or its RS grouper unloaded / left without a parent).
-#}
{% macro refinement_cache_delete_stale() -%}
    delete from {{ this }} as cache
    where not exists (
        select 1
        from {{ ref('int_configurations_evaluated') }} as evaluated
        where
            evaluated.is_counted
            and evaluated.snomed_code = cache.snomed_code
            and evaluated.jurisdiction_id = cache.jurisdiction_id
    )
{%- endmacro %}
