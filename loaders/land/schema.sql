-- Raw landing schema: written only by `refinery load`; read by dbt sources.
-- Migration 1 of `refinery db init` (refinery/dbinit.py), run by an administrator; idempotent.
-- Loads apply no DDL: they check raw.schema_version (loaders/land/ddl.py `require_schema`).

create schema if not exists raw;

-- One row per loader invocation (kind 'tes' or 'configurations').
create table if not exists raw.loads (
    load_id bigint generated always as identity primary key,
    kind text not null check (kind in ('tes', 'configurations')),
    status text not null check (status in ('running', 'succeeded', 'failed')),
    files jsonb not null default '[]'::jsonb,          -- [{"path", "sha256", "bytes", "records"}]
    inserted_count integer not null default 0,
    updated_count integer not null default 0,   -- configurations: rows whose content changed
    deleted_count integer not null default 0,   -- configurations: ids no longer in the snapshot
    unchanged_count integer not null default 0,
    rejected_count integer not null default 0,
    started_at timestamptz not null default clock_timestamp(),
    finished_at timestamptz,
    error text
);

-- One row per distinct ValueSet content ever received.
-- (canonical_url, version, resource_sha256) is unique: loading the same content again adds nothing.
-- The same (canonical_url, version) with other content is a new row; downstream the row with the
-- highest last_seen_load_id wins ("latest load wins"). last_seen_load_id is moved forward only when
-- an older content is received again after a newer one superseded it (a revert), so a plain re-run
-- changes nothing.
create table if not exists raw.tes_valuesets (
    valueset_id bigint generated always as identity primary key,
    canonical_url text not null,
    version text not null,
    resource jsonb not null,
    resource_sha256 text not null,
    source_file text not null,
    load_id bigint not null references raw.loads (load_id),
    last_seen_load_id bigint not null references raw.loads (load_id),
    loaded_at timestamptz not null,
    constraint tes_valuesets_content_key unique (canonical_url, version, resource_sha256)
);
create index if not exists tes_valuesets_url_version_idx
    on raw.tes_valuesets (canonical_url, version, last_seen_load_id desc);
create index if not exists tes_valuesets_last_seen_idx on raw.tes_valuesets (last_seen_load_id);

-- Full snapshot of the Refiner's configurations; each configurations load makes it equal its file,
-- writing only the rows that changed (load_id: the load that last wrote the row).
create table if not exists raw.configurations (
    id bigint primary key,
    jurisdiction_id text not null,
    child_grouper_url text not null,
    child_grouper_version text not null,
    display_name_override text,
    version integer not null default 1,
    loinc_codes text [] not null default '{}',
    snomed_codes text [] not null default '{}',
    icd10_codes text [] not null default '{}',
    rxnorm_codes text [] not null default '{}',
    excluded_codes text [] not null default '{}',
    is_active boolean not null default false,
    created_by text,
    created_at timestamptz,
    updated_at timestamptz not null,
    load_id bigint not null references raw.loads (load_id)
);

-- Records refused under --skip-invalid, with the reason.
create table if not exists raw.rejected_records (
    rejected_id bigint generated always as identity primary key,
    load_id bigint not null references raw.loads (load_id),
    kind text not null,
    source_file text not null,
    record_index integer,
    record_key text,
    reason text not null,
    record text,
    rejected_at timestamptz not null default clock_timestamp()
);
