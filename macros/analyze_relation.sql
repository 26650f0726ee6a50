{#-
    Post-hook for tables that later models join: refresh planner statistics right away
    (autovacuum would get there later, after the downstream queries were planned blind).
-#}
{% macro analyze_relation() -%}
    analyze {{ this }}
{%- endmacro %}
