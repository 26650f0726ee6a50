{#-
    The group roles (refiner_loader, refiner_builder, refiner_app, refiner_analyst) are created
    by `refinery db init` (refinery/dbinit.py), run once per database by an administrator: a
    build creates no role. dbt grants SELECT per model (`grants` in dbt_project.yml):

      refiner_app      the serving tables
      refiner_analyst  the marts and snapshots

    and this on-run-end hook grants USAGE on the schemas the granted relations live in (dbt
    `grants` covers the relations only; init grants it too). It skips schemas that do not
    exist yet. Granting needs only ownership of the schema, which the builder has.
-#}
{% macro grant_schema_usage() %}
    {% set snapshot_schema = generate_schema_name("snapshots", none) | trim %}
    {% set usages = [
        [target.schema, "refiner_app"],
        [target.schema, "refiner_analyst"],
        [snapshot_schema, "refiner_analyst"],
    ] %}
    do $grant_usage$
    begin
    {% for schema_name, role_name in usages %}
            if exists (select from pg_catalog.pg_namespace where nspname = '{{ schema_name }}') then
                grant usage on schema {{ adapter.quote(schema_name) }} to {{ role_name }};
            end if;
{% endfor %}
    end
    $grant_usage$;
{% endmacro %}
