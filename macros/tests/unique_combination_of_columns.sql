{#-
    Generic test: no two rows share the same values of `combination_of_columns` (a composite
    key). Named and called like dbt_utils' test so that tools that know it (dbt-score's
    has_uniqueness_test) recognise it; the project installs no packages (it builds offline).
-#}
{% test unique_combination_of_columns(model, combination_of_columns) %}
    select
        {{ combination_of_columns | join(', ') }},
        count(*) as occurrences
    from {{ model }}
    group by {{ combination_of_columns | join(', ') }}
    having count(*) > 1
{% endtest %}
