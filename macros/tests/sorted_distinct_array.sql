{#-
    Generic test: an array column is sorted bytewise (collation "C") with no duplicates and no
    nulls. Each element is compared with the next one (two slices unnested side by side): linear,
    no sort of every array (millions of codes at production scale).
-#}
{% test sorted_distinct_array(model, column_name) %}
    select {{ column_name }}
    from {{ model }}
    where
        array_position({{ column_name }}, null) is not null
        or exists (
            select 1
            from unnest(
                ({{ column_name }})[:cardinality({{ column_name }}) - 1], ({{ column_name }})[2:]
            ) as pairs (previous_element, next_element)
            where not pairs.previous_element collate "C" < pairs.next_element
        )
{% endtest %}
