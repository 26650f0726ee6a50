{#-
    The three group roles of the data layer, created idempotently (safe to run concurrently),
    and the loader's rights on schema `raw`:

      refiner_app      SELECT on the serving tables (granted per model by dbt `grants`)
      refiner_analyst  SELECT on the marts and snapshots (dbt `grants`)
      refiner_loader   writes schema `raw` only

    `dbt run-operation create_roles` (or `--args '{login: true}'` for roles that may log in
    themselves). The roles are NOLOGIN by default: give people and services their own login
    role and `grant refiner_app to <login>`. The project's on-run-start hook runs
    `refiner_roles_sql()` so a build never grants to a role that does not exist; where the
    dbt user may not create roles, run this once as an administrator and build with
    `--vars '{manage_roles: false}'`.
-#}
{% macro create_roles(login=false) %}
    {% do run_query(refiner_roles_sql(login=login)) %}
    {% do log("roles refiner_app, refiner_analyst, refiner_loader are in place", info=true) %}
{% endmacro %}


{% macro refiner_role_names() %}
    {{ return(["refiner_app", "refiner_analyst", "refiner_loader"]) }}
{% endmacro %}


{% macro refiner_roles_sql(login=false) %}
{% for role_name in refiner_role_names() %}
    do $create_role$
    begin
        if not exists (select from pg_catalog.pg_roles where rolname = '{{ role_name }}') then
            create role {{ role_name }} {{ "login" if login else "nologin" }};
        end if;
    exception
        when duplicate_object or unique_violation then
            null;  -- created concurrently by another session
    end
    $create_role$;
{% endfor %}
    create schema if not exists raw;
    grant usage on schema raw to refiner_loader;
    grant select, insert, update, delete on all tables in schema raw to refiner_loader;
    grant usage, select on all sequences in schema raw to refiner_loader;
    alter default privileges in schema raw
    grant select, insert, update, delete on tables to refiner_loader;
    alter default privileges in schema raw
    grant usage, select on sequences to refiner_loader;
{% endmacro %}


{#-
    USAGE on the schemas the granted relations live in (dbt `grants` covers the relations
    only). Run by the on-run-end hook; skips schemas that do not exist yet.
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
