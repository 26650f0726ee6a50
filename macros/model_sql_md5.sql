{#-
    The MD5 of the calling model's own SQL (its raw code): mixed into the inputs fingerprint of
    an incremental model whose rows are rebuilt where the fingerprint changed, so that editing
    the model rebuilds it all without a --full-refresh. Empty when the model is not known (a
    linter rendering the SQL on its own).
-#}
{% macro model_sql_md5() -%}
    {%- if execute and model is defined and model.raw_code is defined -%}
        {{ return(local_md5(model.raw_code)) }}
    {%- endif -%}
    {{ return('') }}
{%- endmacro %}
