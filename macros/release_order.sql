{#- A TES release version as an int [] that sorts numerically (3.0.0 < 10.0.0); '{}' when the
    version is not dotted digits, so such versions sort first. -#}
{% macro release_order(version) -%}
    case
        when {{ version }} ~ '^[0-9]{1,9}(\.[0-9]{1,9})*$' then string_to_array({{ version }}, '.')::int []
        else '{}'::int []
    end
{%- endmacro %}
