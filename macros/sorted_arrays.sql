{#-
    Helpers for sorted, distinct text[] (collation "C"), the shape of every code array here.
    Both find positions by binary search (width_bucket over the sorted base array), so adding a
    handful of codes to a base of thousands costs a few comparisons and one copy, not a sort.
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

{#-
    Merge sorted `extras` (distinct, none of them in `base`) into sorted `base`. Each extra is
    placed after the base elements that sort before it; the pieces are joined as text with the
    unit separator (chr(31)), which codes practically never contain: `separator_in_base` is a
    boolean expression saying whether base holds one (precomputed once per base), the extras
    are checked here; either way a plain sort takes over.
-#}
{% macro sorted_merge(base, extras, separator_in_base) -%}
    case
        when cardinality({{ extras }}) = 0 then {{ base }}
        when {{ separator_in_base }} or strpos(array_to_string({{ extras }}, ''), chr(31)) > 0
            then array(
                select merged_codes.code
                from unnest({{ base }} || {{ extras }}) as merged_codes (code)
                order by merged_codes.code collate "C"
            )::text []
        else string_to_array(
            (
                select
                    string_agg(
                        concat_ws(
                            chr(31),
                            nullif(array_to_string(({{ base }})[pieces.previous_bucket + 1:pieces.bucket], chr(31)), ''),
                            pieces.code,
                            case
                                when pieces.position = cardinality({{ extras }})
                                    then nullif(
                                        array_to_string(
                                            ({{ base }})[pieces.bucket + 1:cardinality({{ base }})], chr(31)
                                        ),
                                        ''
                                    )
                            end
                        ),
                        chr(31) order by pieces.position
                    )
                from (
                    select
                        located.code,
                        located.position,
                        located.bucket,
                        coalesce(lag(located.bucket) over (order by located.position), 0) as previous_bucket
                    from (
                        select
                            extra_codes.code,
                            extra_codes.position,
                            width_bucket(extra_codes.code collate "C", {{ base }}) as bucket
                        from unnest({{ extras }}) with ordinality as extra_codes (code, position)
                    ) as located
                ) as pieces
            ),
            chr(31)
        )::text []
    end
{%- endmacro %}
