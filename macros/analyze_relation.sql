{#-
    Post-hook for tables that later models join: refresh planner statistics right away
    (autovacuum would get there later, after the downstream queries were planned blind).
    Nothing for a view (a folder-level hook also reaches the intermediate views).
-#}
{% macro analyze_relation() -%}
    {%- if config.get('materialized') != 'view' -%}
        analyze {{ this }}
    {%- endif -%}
{%- endmacro %}
