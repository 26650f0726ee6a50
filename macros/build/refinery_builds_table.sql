{#-
    Where `refinery build` / `refinery sync` record each successful planned build
    (refinery/build_plan.py reads the latest row to plan the next build; docs/cache.md).
    Created by this on-run-end hook in the target schema, so the builder owns it; no grants:
    only refinery reads it. Creating it when it exists is a no-op.
-#}
{% macro refinery_builds_table() %}
    create table if not exists {{ adapter.quote(target.schema) }}.refinery_builds (
        build_id bigint generated always as identity primary key,
        plan text not null,
        tes_fingerprint text not null,
        configurations_fingerprint text not null,
        project_fingerprint text not null,
        nodes jsonb not null default '{}'::jsonb,
        started_at timestamptz not null,
        finished_at timestamptz not null default now()
    )
{% endmacro %}
