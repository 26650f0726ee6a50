-- noqa: disable=LT02
-- (the SQL a materialization emits is indented by its Jinja blocks)
{#-
    incremental_upsert: an incremental materialization for a serving table that is read while
    it is kept current, where the cost of a build that changes little must be a few
    milliseconds, not dbt's usual dozen round trips (temporary table, column introspection,
    delete, insert, grants query...).

    - The table does not exist, or --full-refresh: built like dbt's `table` materialization
      (contract DDL, insert, indexes, atomic rename over the old table, grants, docs).
    - It exists: the model's SQL, rendered with is_incremental_upsert() true, must return only
      the rows to (re)write. They are upserted on `unique_key` in ONE statement sent with the
      model's hooks in ONE round trip. `preserve_unless_changed` ({column: guard_column}) keeps
      an existing row's `column` (e.g. updated_at) when its `guard_column` (e.g. a content
      hash) is unchanged. With `delete_if_null` (a column the contract declares not null), a
      returned row whose value there is null stands for a key that must disappear: the same
      statement deletes the table's row with that unique_key instead of writing it.

    A table whose columns are not the contract's stops the build with a message naming the
    --full-refresh to run (the check rides in the same round trip).

    `inputs_fingerprint` (optional) makes a build whose inputs did not change cost one scan of
    those inputs instead of the model's diff over every key: {ref: model, where: condition,
    columns: [...]} names the rows and columns the model's output is a function of. Their
    fingerprint (row count and the exact sum of the rows' 64-bit hashes) is kept in a one-row
    side table, <identifier>__synced_inputs, written in the same transaction as the table (full
    build or upsert). While it matches, the model's SQL is not run at all (a one-time filter);
    any change opens the gate and the model's own diff runs. This trusts that only this
    materialization writes the table, as the diff itself does: put right a table written by
    hand with --full-refresh. Without the option, a side table left from an earlier build is
    dropped (a stale fingerprint must never shut the gate later).

    Config: unique_key (list, required), preserve_unless_changed (dict, optional),
    delete_if_null (column name, optional), inputs_fingerprint (dict, optional),
    storage_parameters (dict, optional: `with (...)` of the created table), column_storage
    (dict, optional: column -> plain|main|external|extended) and column_collations (dict,
    optional: column -> collation, the column keeping its contract data_type), all set before
    rows are written. The
    inserted columns are the contract's (the model's YAML columns): a change of columns needs
    --full-refresh (see the check above). Grants
    are (re)applied when the table is built; change them with --full-refresh.
-#}
{% materialization incremental_upsert, adapter='postgres' %}

    {%- set unique_key = config.require('unique_key') -%}
    {%- set unique_key = [unique_key] if unique_key is string else unique_key -%}
    {%- set preserve = config.get('preserve_unless_changed', {}) -%}
    {%- set target_relation = this.incorporate(type='table') -%}
    {%- set existing_relation = load_cached_relation(this) -%}
    {%- set grant_config = config.get('grants') -%}
    {%- set inputs_spec = config.get('inputs_fingerprint') -%}
    {%- set synced_inputs = incremental_upsert_synced_inputs_relation(target_relation) -%}
    {%- set rebuild = existing_relation is none
        or existing_relation.type != 'table'
        or should_full_refresh() -%}

    {% if rebuild %}

        {%- set intermediate_relation = make_intermediate_relation(target_relation) -%}
        {%- set backup_relation = make_backup_relation(target_relation, 'table') -%}
        {{ drop_relation_if_exists(load_cached_relation(intermediate_relation)) }}
        {{ drop_relation_if_exists(load_cached_relation(backup_relation)) }}

        {{ run_hooks(pre_hooks, inside_transaction=False) }}
        {{ run_hooks(pre_hooks, inside_transaction=True) }}

        {% call statement('main') -%}
            {{ incremental_upsert_create_sql(intermediate_relation, sql) }}
        {%- endcall %}
        {% do create_indexes(intermediate_relation) %}

        {% if existing_relation is not none %}
            {% set existing_relation = load_cached_relation(existing_relation) %}
            {% if existing_relation is not none %}
                {{ adapter.rename_relation(existing_relation, backup_relation) }}
            {% endif %}
        {% endif %}
        {{ adapter.rename_relation(intermediate_relation, target_relation) }}

        {%- if inputs_spec %}
        {% call statement('record_inputs') -%}
            {{ incremental_upsert_record_inputs_sql(synced_inputs, inputs_spec) }}
        {%- endcall %}
        {%- else %}
        {{ drop_relation_if_exists(load_cached_relation(synced_inputs)) }}
        {%- endif %}

        {{ run_hooks(post_hooks, inside_transaction=True) }}
        {% do apply_grants(target_relation, grant_config, should_revoke=should_revoke(existing_relation, full_refresh_mode=True)) %}
        {% do persist_docs(target_relation, model) %}
        {{ adapter.commit() }}
        {{ drop_relation_if_exists(backup_relation) }}
        {{ run_hooks(post_hooks, inside_transaction=False) }}

    {% else %}

        {%- set columns = model['columns'].keys() | list -%}
        {%- if columns | length == 0 -%}
            {{ exceptions.raise_compiler_error(
                "incremental_upsert: " ~ this ~ " declares no columns in YAML; the upsert writes the contract's columns") }}
        {%- endif -%}
        {%- set updatable = columns | reject('in', unique_key) | list -%}
        {%- set delete_if_null = config.get('delete_if_null') -%}
        {%- if delete_if_null is not none and delete_if_null not in updatable -%}
            {{ exceptions.raise_compiler_error(
                "incremental_upsert: delete_if_null of " ~ this ~ " must name one of its non-key columns, not " ~ delete_if_null) }}
        {%- endif -%}
        {{ run_hooks(pre_hooks, inside_transaction=False) }}
        {%- set has_synced_inputs = load_cached_relation(synced_inputs) is not none -%}
        {% call statement('main') -%}
            {{ incremental_upsert_check_columns_sql(target_relation, columns) }}
            {%- if inputs_spec and not has_synced_inputs %}
            {#- a table built before inputs_fingerprint was set: this run diffs, and records -#}
            {{ incremental_upsert_create_synced_inputs_sql(synced_inputs) }}
            {%- elif has_synced_inputs and not inputs_spec %}
            drop table if exists {{ synced_inputs }};
            {%- endif %}
            {{ incremental_upsert_hooks_sql(pre_hooks) }}
            with
            {%- if inputs_spec %}
            inputs as materialized (
                {{ incremental_upsert_inputs_fingerprint_sql(inputs_spec) }}
            ),
            synced_inputs_recorded as (
                -- the fingerprint the table was last written from becomes this one
                update {{ synced_inputs }} as synced
                set inputs_fingerprint = inputs.fingerprint, synced_at = now()
                from inputs
                where synced.inputs_fingerprint is distinct from inputs.fingerprint
            ),
            rows_to_write as (
                -- the model's rows, only when its inputs changed since the table was written
                select model_rows.*
                from (
                    {{ sql }}
                ) as model_rows
                where not exists (
                    select
                    from {{ synced_inputs }} as synced
                    inner join inputs on synced.inputs_fingerprint = inputs.fingerprint
                )
            )
            {%- else %}
            rows_to_write as (
                {{ sql }}
            )
            {%- endif %}
            {%- if delete_if_null is not none %},
            deleted_rows as (
                delete from {{ target_relation }} as existing_rows
                using rows_to_write
                where
                    rows_to_write.{{ delete_if_null }} is null
                    {%- for key in unique_key %}
                    and existing_rows.{{ key }} = rows_to_write.{{ key }}
                    {%- endfor %}
            )
            {%- endif %}
            insert into {{ target_relation }} as existing_rows ({{ columns | join(', ') }})
            select {{ columns | join(', ') }}
            from rows_to_write
            {%- if delete_if_null is not none %}
            where rows_to_write.{{ delete_if_null }} is not null
            {%- endif %}
            on conflict ({{ unique_key | join(', ') }}) do update set
            {%- for column in updatable %}
                {{ column }} =
                {%- if column in preserve %}
                    case
                        when existing_rows.{{ preserve[column] }} = excluded.{{ preserve[column] }}
                            then existing_rows.{{ column }}
                        else excluded.{{ column }}
                    end
                {%- else %} excluded.{{ column }}
                {%- endif %}{{ ',' if not loop.last }}
            {%- endfor %};
            {{ incremental_upsert_hooks_sql(post_hooks) }}
        {%- endcall %}
        {{ adapter.commit() }}
        {{ run_hooks(post_hooks, inside_transaction=False) }}

    {% endif %}

    {{ return({'relations': [target_relation]}) }}

{% endmaterialization %}


{#-
    dbt-postgres' create_table_as (contract DDL when enforced, then insert), plus the table's
    storage parameters, column storage modes and collations, set before rows are written.
-#}
{% macro incremental_upsert_create_sql(relation, sql) -%}
    {%- set parameters = config.get('storage_parameters', {}) -%}
    {%- if not config.get('contract').enforced -%}
        {{ exceptions.raise_compiler_error("incremental_upsert: " ~ this ~ " needs an enforced contract") }}
    {%- endif -%}
    {{ get_assert_columns_equivalent(sql) }}
    create table {{ relation }}
    {{ get_table_columns_and_constraints() }}
    {%- if parameters %}
    with (
        {%- for name, value in parameters.items() %}
        {{ name }} = {{ value }}{{ ',' if not loop.last }}
        {%- endfor %}
    )
    {%- endif %};
    {%- for column, storage in config.get('column_storage', {}).items() %}
    alter table {{ relation }} alter column {{ adapter.quote(column) }} set storage {{ storage }};
    {%- endfor %}
    {%- for column, collation in config.get('column_collations', {}).items() %}
    alter table {{ relation }} alter column {{ adapter.quote(column) }}
        type {{ model['columns'][column]['data_type'] }} collate {{ adapter.quote(collation) }};
    {%- endfor %}
    insert into {{ relation }} ({{ adapter.dispatch('get_column_names', 'dbt')() }})
    {{ get_select_subquery(sql) }};
{%- endmacro %}


{#-
    Schema drift (on_schema_change 'fail', in the same round trip): when the table's columns are
    not the contract's, stop with a message saying how to rebuild, before anything is written.
-#}
{% macro incremental_upsert_check_columns_sql(relation, columns) -%}
    {%- set expected = columns | sort | join(', ') -%}
    do $check_columns$
    declare
        found text;
    begin
        select string_agg(attname, ', ' order by attname collate "C")
        into found
        from pg_catalog.pg_attribute
        where attrelid = '{{ relation }}'::regclass and attnum > 0 and not attisdropped;
        if found is distinct from '{{ expected }}' then
            raise exception '% has columns (%) but the model''s contract declares (%): rebuild it with `refinery build --full-refresh --select {{ model.name }}`',
                '{{ relation }}', found, '{{ expected }}';
        end if;
    end
    $check_columns$;
{%- endmacro %}


{#- The in-transaction hooks as `;`-terminated statements, to send in the model's round trip. -#}
{% macro incremental_upsert_hooks_sql(hooks) -%}
    {%- for hook in hooks | selectattr('transaction', 'equalto', true) %}
        {%- set rendered = render(hook.get('sql')) | trim %}
        {%- if rendered | length > 0 %}
        {{ rendered }};
        {%- endif %}
    {%- endfor %}
{%- endmacro %}


{#-
    True when an incremental_upsert model is being rendered to write into an existing table:
    its SQL must then return only the rows to (re)write. (dbt's is_incremental() is tied to the
    `incremental` materialization.)
-#}
{% macro is_incremental_upsert() -%}
    {%- if not execute -%}
        {{ return(false) }}
    {%- endif -%}
    {%- set relation = adapter.get_relation(this.database, this.schema, this.identifier) -%}
    {{ return(
        relation is not none
        and relation.type == 'table'
        and model.config.materialized == 'incremental_upsert'
        and not should_full_refresh()
    ) }}
{%- endmacro %}


{#-
    inputs_fingerprint: where the fingerprint of the inputs the table was last written from is
    kept (one row, beside the table, no grants), and how it is computed and recorded.
-#}
{% macro incremental_upsert_synced_inputs_relation(relation) -%}
    {{ return(relation.incorporate(path={'identifier': relation.identifier ~ '__synced_inputs'})) }}
{%- endmacro %}


{#-
    The row count and the exact sum of the rows' 64-bit hashes: order-free, one scan. A row's
    hash chains its columns' text through hashtextextended's seed (no string is built), a null
    flipping the lowest bit so that it differs from ''.
-#}
{% macro incremental_upsert_inputs_fingerprint_sql(spec) -%}
    {%- set columns = spec.get('columns') or [] -%}
    {%- if spec.get('ref') is none or columns is string or columns | length == 0 -%}
        {{ exceptions.raise_compiler_error(
            "incremental_upsert: inputs_fingerprint of " ~ this ~ " needs `ref` (a model) and `columns` (a list)") }}
    {%- endif -%}
    {%- set row_hash = namespace(sql='0') -%}
    {%- for column in columns -%}
        {%- set row_hash.sql = "(hashtextextended(coalesce((" ~ column ~ ")::text, ''), " ~ row_hash.sql
            ~ ") # ((" ~ column ~ ") is null)::int::bigint)" -%}
    {%- endfor %}
    select
        count(*)::text || ':' || coalesce(sum({{ row_hash.sql }}), 0)::text as fingerprint
    from {{ ref(spec['ref']) }}
    {%- if spec.get('where') %}
    where {{ spec['where'] }}
    {%- endif %}
{%- endmacro %}


{% macro incremental_upsert_create_synced_inputs_sql(relation) -%}
    create table if not exists {{ relation }} (
        inputs_fingerprint text not null,
        synced_at timestamptz
    );
    comment on table {{ relation }} is
        'incremental_upsert state of {{ this.identifier }}: the fingerprint of the inputs it was last written from (inputs_fingerprint config); one row';
    insert into {{ relation }} (inputs_fingerprint)
    select ''
    where not exists (select from {{ relation }});
{%- endmacro %}


{#- Full build: the table now holds exactly what these inputs give. -#}
{% macro incremental_upsert_record_inputs_sql(relation, spec) -%}
    {{ incremental_upsert_create_synced_inputs_sql(relation) }}
    update {{ relation }}
    set inputs_fingerprint = inputs.fingerprint, synced_at = now()
    from (
        {{ incremental_upsert_inputs_fingerprint_sql(spec) }}
    ) as inputs;
{%- endmacro %}
