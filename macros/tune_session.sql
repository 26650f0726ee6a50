{#-
    Pre-hook of the heavier models (runs inside the model's transaction, `set local`): no JIT —
    the row estimates of jsonb set-returning functions are wild guesses that make PostgreSQL
    spend seconds compiling queries that run in milliseconds — and enough work_mem to sort and
    hash grouper codes in memory.
-#}
{% macro tune_session() -%}
    set local jit = off;
    set local work_mem = '64MB'
{%- endmacro %}
