{#-
    Helpers for sorted, distinct text[] (collation "C"), the shape of every grouper code array.
    Positions are found by binary search (width_bucket over the sorted base array), so checking
    a handful of added codes against a base of thousands costs a few comparisons, not a scan.
-#}

{#- The elements of sorted `candidates` that sorted `base` lacks, in order. -#}
{% macro sorted_missing(candidates, base) -%}
    array(
        select candidate_codes.code
        from unnest({{ candidates }}) with ordinality as candidate_codes (code, position)
        where
            ({{ base }})[width_bucket(candidate_codes.code collate "C", {{ base }})]
            is distinct from candidate_codes.code
        order by candidate_codes.position
    )::text []
{%- endmacro %}
