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

    `inputs_fingerprint` (optional) makes a build cost what changed, not the table:
    {ref: model, partition_by: column, column: column} names a model holding one row per
    partition (a value of `partition_by`, a column of this model too) with the fingerprint of
    every input the partition's rows are built from (the model declares the dependency:
    `-- depends_on: {{ ref('...') }}`). The fingerprints the table was last
    written from are kept in a side table, <identifier>__synced_partitions (one row per
    partition), written in the same transaction as the table (full build or upsert). A build
    compares the two (one row per partition, not per key): when none changed, the model's SQL
    does not run at all (a one-time filter); otherwise the model's SQL may restrict its diff to
    the partitions whose inputs changed (macro incremental_upsert_in_changed_partitions), whose
    rows must be a function of their partition's inputs alone. When the side table is
    missing, it is seeded with every partition the table holds, so that the next build diffs
    them all. This trusts that only this materialization writes the table, as the diff itself
    does: put right a table written by hand with --full-refresh. Without the option, a side
    table left from a build that had it is dropped (a stale fingerprint must never shut the
    gate later).

    Config: unique_key (list, required), preserve_unless_changed (dict, optional),
    delete_if_null (column name, optional), inputs_fingerprint (dict, optional),
    storage_parameters (dict, optional: `with (...)` of the created table), column_storage
    (dict, optional: column -> plain|main|external|extended) and column_collations (dict,
    optional: column -> collation, the column keeping its contract data_type), all set before
    rows are written (TOAST compression: the tune_session pre-hook picks lz4 where the server
    has it; `storage external` where it lacks lz4 was measured and not kept, docs/scaling.md). The
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
    {%- set inputs_spec = incremental_upsert_inputs_spec() -%}
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
            {#- no record of what the table was written from: every partition it holds is diffed -#}
            {{ incremental_upsert_create_synced_inputs_sql(synced_inputs) }}
            insert into {{ synced_inputs }} (partition_key, inputs_fingerprint)
            select distinct ({{ inputs_spec['partition_by'] }})::text, ''
            from {{ target_relation }}
            on conflict (partition_key) do nothing;
            {%- elif has_synced_inputs and not inputs_spec %}
            drop table if exists {{ synced_inputs }};
            {%- endif %}
            {{ incremental_upsert_hooks_sql(pre_hooks) }}
            with
            {%- if inputs_spec %}
            changed_partitions as materialized (
                -- the partitions whose inputs are not the ones the table was last written from
                -- (inputs_fingerprint null: the partition has no inputs any more)
                select
                    coalesce(inputs.partition_key, synced.partition_key) as partition_key,
                    inputs.inputs_fingerprint
                from (
                    {{ incremental_upsert_current_inputs_sql(inputs_spec) }}
                ) as inputs
                full join {{ synced_inputs }} as synced
                    on inputs.partition_key = synced.partition_key
                where inputs.inputs_fingerprint is distinct from synced.inputs_fingerprint
            ),
            synced_inputs_recorded as (
                insert into {{ synced_inputs }} as synced (partition_key, inputs_fingerprint, synced_at)
                select partition_key, inputs_fingerprint, now()
                from changed_partitions
                where inputs_fingerprint is not null
                on conflict (partition_key) do update
                set inputs_fingerprint = excluded.inputs_fingerprint, synced_at = excluded.synced_at
            ),
            synced_inputs_dropped as (
                delete from {{ synced_inputs }} as synced
                using changed_partitions
                where
                    changed_partitions.inputs_fingerprint is null
                    and synced.partition_key = changed_partitions.partition_key
            ),
            rows_to_write as (
                -- the model's rows, only when some partition's inputs changed
                select model_rows.*
                from (
                    {{ sql }}
                ) as model_rows
                where exists (select from changed_partitions)
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
    inputs_fingerprint: where the fingerprints of the inputs the table was last written from are
    kept (one row per partition, beside the table, no grants), and how they are recorded.
-#}
{% macro incremental_upsert_synced_inputs_relation(relation) -%}
    {{ return(relation.incorporate(path={'identifier': relation.identifier ~ '__synced_partitions'})) }}
{%- endmacro %}


{#-
    The inputs_fingerprint config, checked: {ref, partition_by, column} or none.
-#}
{% macro incremental_upsert_inputs_spec() -%}
    {%- set spec = config.get('inputs_fingerprint') -%}
    {%- if spec is none -%}
        {{ return(none) }}
    {%- endif -%}
    {%- if spec is not mapping or spec.get('ref') is none or spec.get('partition_by') is none
        or spec.get('column') is none -%}
        {{ exceptions.raise_compiler_error(
            "incremental_upsert: inputs_fingerprint of " ~ this ~ " needs `ref` (a model with one row per partition), `partition_by` and `column` (its fingerprint)") }}
    {%- endif -%}
    {{ return(spec) }}
{%- endmacro %}


{#-
    For an incremental_upsert model's incremental SQL: a condition true for the rows whose
    `column` (the partition_by column, in any relation the diff reads) is a partition whose
    inputs changed - the materialization's changed_partitions CTE; `true` for a model without
    inputs_fingerprint.
-#}
{% macro incremental_upsert_in_changed_partitions(column) -%}
    {%- if execute and config.get('inputs_fingerprint') -%}
        {{ column }} = any(array(select partition_key from changed_partitions))
    {%- else -%}
        true
    {%- endif -%}
{%- endmacro %}


{% macro incremental_upsert_create_synced_inputs_sql(relation) -%}
    create table if not exists {{ relation }} (
        partition_key text primary key,
        inputs_fingerprint text not null,
        synced_at timestamptz
    );
    comment on table {{ relation }} is
        'incremental_upsert state of {{ this.identifier }}: per partition, the fingerprint of the inputs its rows were last written from (inputs_fingerprint config)';
{%- endmacro %}


{#- Full build: the table now holds exactly what these inputs give. -#}
{% macro incremental_upsert_record_inputs_sql(relation, spec) -%}
    {{ incremental_upsert_create_synced_inputs_sql(relation) }}
    delete from {{ relation }};
    insert into {{ relation }} (partition_key, inputs_fingerprint, synced_at)
    select inputs.partition_key, inputs.inputs_fingerprint, now()
    from (
        {{ incremental_upsert_current_inputs_sql(spec) }}
    ) as inputs;
{%- endmacro %}


{#-
    The inputs' fingerprint of every partition now (partition_key, inputs_fingerprint, both
    text): what a full build records and what an incremental one compares with the record.
-#}
{% macro incremental_upsert_current_inputs_sql(spec) -%}
    select
        ({{ spec['partition_by'] }})::text as partition_key,
        ({{ spec['column'] }})::text as inputs_fingerprint
    from {{ ref(spec['ref']) }}
{%- endmacro %}
