{#-
    Schemas: serving and analytics marts and seeds land in the target schema itself
    (`refiner` by default); a folder with `+schema: staging` lands in `refiner_staging`,
    likewise `refiner_intermediate` and `refiner_snapshots`.
-#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ target.schema }}_{{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
