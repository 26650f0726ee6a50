{#-
    A text[] of codes, trimmed, without blanks or duplicates, sorted bytewise (collation "C",
    the order every code array of this project uses). Null gives '{}'.
-#}
{% macro clean_code_array(column) -%}
    array(
        select distinct trim(raw_code) collate "C" as code
        from unnest(coalesce({{ column }}, '{}'::text [])) as raw_codes (raw_code)
        where nullif(trim(raw_code), '') is not null
        order by 1
    )
{%- endmacro %}
