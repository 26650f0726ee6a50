{#- Generic test: an array column is sorted bytewise (collation "C") with no duplicates. -#}
{% test sorted_distinct_array(model, column_name) %}
    select {{ column_name }}
    from {{ model }}
    where
        {{ column_name }} is distinct from array(
            select distinct element.code collate "C"
            from unnest({{ column_name }}) as element (code)
            order by 1
        )::text []
{% endtest %}
