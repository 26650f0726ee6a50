{#-
    Aggregate: the fingerprint of a set of rows - their count and the exact sum of the rows'
    64-bit hashes, as text ('<count>:<sum>'). Order-free, one scan. A row's hash chains its
    columns' text through hashtextextended's seed (no string is built), a null flipping the
    lowest bit (int8xor, the function behind #) so that it differs from ''. `where` (optional)
    restricts the rows counted (an aggregate FILTER), e.g. to skip the null row of a left join.
-#}
{% macro rows_fingerprint(columns, where=none) -%}
    {%- set row_hash = namespace(sql='0') -%}
    {%- for column in columns -%}
        {%- set row_hash.sql = "int8xor(hashtextextended(coalesce((" ~ column ~ ")::text, ''), " ~ row_hash.sql
            ~ "), ((" ~ column ~ ") is null)::int::bigint)" -%}
    {%- endfor -%}
    {%- set only = '' if where is none else ' filter (where ' ~ where ~ ')' -%}
    count(*){{ only }}::text || ':' || coalesce(sum({{ row_hash.sql }}){{ only }}, 0)::text
{%- endmacro %}
