{#-
    A GIN index on an array or jsonb column of `relation`, created when the table has none on
    that column ("which cache rows contain code X": `where aggregated_codes @> array['X']`).
    Used as a post-hook from YAML (model SQL `indexes` configs take precedence over YAML ones,
    hooks add up). The index is left unnamed so that a full refresh, whose backup table still
    holds the old index while post-hooks run, cannot collide with it.
-#}
{% macro ensure_gin_index(relation, column_name) %}
    do $ensure_gin$
    begin
        if not exists (
            select
            from pg_catalog.pg_index as index_entry
            inner join pg_catalog.pg_class as index_class
                on index_entry.indexrelid = index_class.oid
            inner join pg_catalog.pg_am as access_method
                on index_class.relam = access_method.oid
            inner join pg_catalog.pg_attribute as indexed_column
                on
                    index_entry.indrelid = indexed_column.attrelid
                    and indexed_column.attnum = any(index_entry.indkey)
            where
                index_entry.indrelid = '{{ relation }}'::regclass
                and access_method.amname = 'gin'
                and indexed_column.attname = '{{ column_name }}'
        ) then
            create index on {{ relation }} using gin ({{ adapter.quote(column_name) }});
        end if;
    end
    $ensure_gin$;
{% endmacro %}
