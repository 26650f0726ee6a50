{#-
    A jsonb value when it is an array, else the empty array: FHIR's optional lists (absent, null
    or not a list in a malformed resource) unnest to no rows instead of an error.
-#}
{% macro jsonb_array_or_empty(json) -%}
    case
        when jsonb_typeof({{ json }}) = 'array' then {{ json }}
        else '[]'::jsonb
    end
{%- endmacro %}
