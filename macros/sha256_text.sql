{#- Hex SHA-256 of a text expression (UTF-8). -#}
{% macro sha256_text(expression) -%}
    encode(sha256(convert_to({{ expression }}, 'UTF8')), 'hex')
{%- endmacro %}
