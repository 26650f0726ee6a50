{#-
    Pre-hook of the heavier models (runs inside the model's transaction, transaction-local):
    - no JIT: the row estimates of jsonb set-returning functions are wild guesses that make
      PostgreSQL spend seconds compiling queries that run in milliseconds;
    - enough work_mem to sort and hash grouper codes in memory;
    - lz4 TOAST compression where the server has it: every cache row holds a few kB of codes,
      and pglz compression of them was most of a full build's time.
-#}
{% macro tune_session() -%}
    set local jit = off;
    set local work_mem = '64MB';
    select set_config('default_toast_compression', 'lz4', true)
    from pg_catalog.pg_settings
    where name = 'default_toast_compression' and 'lz4' = any(enumvals)
{%- endmacro %}
