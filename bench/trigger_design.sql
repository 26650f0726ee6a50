-- The row-trigger design this project replaces, re-implemented for the benchmark from the original
-- eCR Refiner database's documented behaviour (schema, aggregation function, two row triggers).
-- Applied into its own schema (`original`) with search_path set by bench/trigger_design.py.
--
-- Kept as the original had it (these are what the benchmark measures):
--   * code columns are jsonb arrays, four code systems only (LOINC, SNOMED, ICD-10-CM, RxNorm);
--   * every insert/update/delete of a reference re-aggregates ALL codes of its parent condition
--     grouper from ALL its children (four correlated sub-queries), row by row;
--   * an update of a condition grouper re-computes the cache row of every configuration below it;
--   * every insert/update/delete of a configuration upserts one refinement_cache row, taking the
--     base codes from ONE parent (limit 1) plus the configuration's additions, de-duplicated;
--   * deleting a configuration recomputes its row without additions instead of removing it.
-- (`-- noqa: RF04`: the original's column names, kept.)
-- Changed only so that the two designs are functionally comparable on the same data:
--   * the RS grouper's snomed_code comes from its useContext focus (set by the seeder), not the
--     ValueSet id — the original's id-derived code never matches a real condition code;
--   * aggregated_codes is written as text[] (the original assigned jsonb to a text[] column);
--   * an inactive configuration produces no cache row (this project counts active ones only);
--   * ids are text (the synthetic jurisdictions may be longer than varchar(4)); no users table.

create schema if not exists original;
set search_path = original;

create table jurisdictions (
    id text primary key,
    name text not null,  -- noqa: RF04
    state_code text,
    created_at timestamptz default current_timestamp,
    updated_at timestamptz default current_timestamp
);

create table tes_condition_groupers (
    canonical_url text not null,
    version text not null,  -- noqa: RF04
    display_name text not null,
    loinc_codes jsonb,
    snomed_codes jsonb,
    icd10_codes jsonb,
    rxnorm_codes jsonb,
    created_at timestamptz default current_timestamp,
    updated_at timestamptz default current_timestamp,
    primary key (canonical_url, version)
);

create table tes_reporting_spec_groupers (
    canonical_url text not null,
    version text not null,  -- noqa: RF04
    display_name text,
    snomed_code text not null,
    loinc_codes jsonb,
    snomed_codes jsonb,
    icd10_codes jsonb,
    rxnorm_codes jsonb,
    created_at timestamptz default current_timestamp,
    updated_at timestamptz default current_timestamp,
    primary key (canonical_url, version),
    unique (snomed_code, version)
);

create table tes_condition_grouper_references (
    id serial primary key,
    parent_grouper_url text not null,
    parent_grouper_version text not null,
    child_grouper_url text not null,
    child_grouper_version text not null,
    created_at timestamptz default current_timestamp,
    updated_at timestamptz default current_timestamp,
    foreign key (parent_grouper_url, parent_grouper_version)
    references tes_condition_groupers (canonical_url, version) on delete cascade,
    foreign key (child_grouper_url, child_grouper_version)
    references tes_reporting_spec_groupers (canonical_url, version) on delete cascade
);

create table configurations (
    id bigint primary key,
    jurisdiction_id text not null references jurisdictions (id),
    child_grouper_url text not null,
    child_grouper_version text not null,
    display_name_override text,
    version text,  -- noqa: RF04
    loinc_codes jsonb,
    snomed_codes jsonb,
    icd10_codes jsonb,
    rxnorm_codes jsonb,
    is_active boolean default false,
    created_by text,
    created_at timestamptz default current_timestamp,
    updated_at timestamptz default current_timestamp,
    foreign key (child_grouper_url, child_grouper_version)
    references tes_reporting_spec_groupers (canonical_url, version) on delete cascade
);

create table refinement_cache (
    snomed_code text not null,
    jurisdiction_id text not null,
    aggregated_codes text[] not null,
    source_details jsonb not null,
    created_at timestamptz default current_timestamp,
    updated_at timestamptz default current_timestamp,
    primary key (snomed_code, jurisdiction_id)
);

-- The original's helper: the distinct codes of one column over a parent's children.
create function get_aggregated_child_codes(
    p_parent_url text, p_parent_version text, p_code_column_name text
) returns jsonb
language plpgsql as $$
declare
    aggregated jsonb;
begin
    execute format(
        $q$
        select coalesce(jsonb_agg(distinct child_codes.code), '[]'::jsonb)
        from (
            select jsonb_array_elements_text(rsg.%1$I) as code
            from tes_reporting_spec_groupers as rsg
            inner join tes_condition_grouper_references as ref
                on rsg.canonical_url = ref.child_grouper_url
                and rsg.version = ref.child_grouper_version
            where ref.parent_grouper_url = %2$L and ref.parent_grouper_version = %3$L
        ) as child_codes
        $q$,
        p_code_column_name, p_parent_url, p_parent_version
    ) into aggregated;
    return aggregated;
end;
$$;

-- TRIGGER 1: re-aggregate the parent condition grouper whenever a reference changes (or a child's
-- codes change), from all of its children, one statement per row touched.
create function update_parent_on_child_change() returns trigger
language plpgsql as $$
declare
    parent_url text;
    parent_version text;
begin
    if tg_table_name = 'tes_condition_grouper_references' then
        if tg_op = 'DELETE' then
            parent_url := old.parent_grouper_url;
            parent_version := old.parent_grouper_version;
        else
            parent_url := new.parent_grouper_url;
            parent_version := new.parent_grouper_version;
        end if;
    elsif tg_table_name = 'tes_reporting_spec_groupers' and tg_op = 'UPDATE' then
        select ref.parent_grouper_url, ref.parent_grouper_version
        into parent_url, parent_version
        from tes_condition_grouper_references as ref
        where ref.child_grouper_url = new.canonical_url and ref.child_grouper_version = new.version
        limit 1;
    end if;

    if parent_url is not null then
        update tes_condition_groupers as cg
        set
            loinc_codes = coalesce((
                select jsonb_agg(distinct child_codes.code)
                from (
                    select jsonb_array_elements_text(rsg.loinc_codes) as code
                    from tes_reporting_spec_groupers as rsg
                    inner join tes_condition_grouper_references as ref
                        on rsg.canonical_url = ref.child_grouper_url
                        and rsg.version = ref.child_grouper_version
                    where ref.parent_grouper_url = parent_url and ref.parent_grouper_version = parent_version
                ) as child_codes
            ), '[]'::jsonb),
            snomed_codes = coalesce((
                select jsonb_agg(distinct child_codes.code)
                from (
                    select jsonb_array_elements_text(rsg.snomed_codes) as code
                    from tes_reporting_spec_groupers as rsg
                    inner join tes_condition_grouper_references as ref
                        on rsg.canonical_url = ref.child_grouper_url
                        and rsg.version = ref.child_grouper_version
                    where ref.parent_grouper_url = parent_url and ref.parent_grouper_version = parent_version
                ) as child_codes
            ), '[]'::jsonb),
            icd10_codes = coalesce((
                select jsonb_agg(distinct child_codes.code)
                from (
                    select jsonb_array_elements_text(rsg.icd10_codes) as code
                    from tes_reporting_spec_groupers as rsg
                    inner join tes_condition_grouper_references as ref
                        on rsg.canonical_url = ref.child_grouper_url
                        and rsg.version = ref.child_grouper_version
                    where ref.parent_grouper_url = parent_url and ref.parent_grouper_version = parent_version
                ) as child_codes
            ), '[]'::jsonb),
            rxnorm_codes = coalesce((
                select jsonb_agg(distinct child_codes.code)
                from (
                    select jsonb_array_elements_text(rsg.rxnorm_codes) as code
                    from tes_reporting_spec_groupers as rsg
                    inner join tes_condition_grouper_references as ref
                        on rsg.canonical_url = ref.child_grouper_url
                        and rsg.version = ref.child_grouper_version
                    where ref.parent_grouper_url = parent_url and ref.parent_grouper_version = parent_version
                ) as child_codes
            ), '[]'::jsonb),
            updated_at = now()
        where cg.canonical_url = parent_url and cg.version = parent_version;
    end if;
    return null;
end;
$$;

create trigger trigger_update_parent_on_ref_change
after insert or update or delete on tes_condition_grouper_references
for each row execute function update_parent_on_child_change();

create trigger trigger_update_parent_on_child_update
after update on tes_reporting_spec_groupers
for each row execute function update_parent_on_child_change();

-- TRIGGER 2 helper: recompute and upsert the cache row of one configuration.
create function update_cache_for_configuration(conf configurations, is_delete boolean)
returns void
language plpgsql as $$
declare
    base_codes jsonb;
    addition_codes jsonb;
    combined_codes text [];
    child_snomed_code text;
    parent_url text;
    parent_ver text;
begin
    if not is_delete and not coalesce(conf.is_active, false) then
        return;
    end if;

    select ref.parent_grouper_url, ref.parent_grouper_version
    into parent_url, parent_ver
    from tes_condition_grouper_references as ref
    where ref.child_grouper_url = conf.child_grouper_url
        and ref.child_grouper_version = conf.child_grouper_version
    limit 1;
    if not found then
        return;
    end if;

    select coalesce(cg.loinc_codes, '[]'::jsonb) || coalesce(cg.snomed_codes, '[]'::jsonb)
        || coalesce(cg.icd10_codes, '[]'::jsonb) || coalesce(cg.rxnorm_codes, '[]'::jsonb)
    into base_codes
    from tes_condition_groupers as cg
    where cg.canonical_url = parent_url and cg.version = parent_ver;

    if is_delete then
        addition_codes := '[]'::jsonb;
    else
        addition_codes := coalesce(conf.loinc_codes, '[]'::jsonb) || coalesce(conf.snomed_codes, '[]'::jsonb)
            || coalesce(conf.icd10_codes, '[]'::jsonb) || coalesce(conf.rxnorm_codes, '[]'::jsonb);
    end if;

    select coalesce(array_agg(distinct all_codes.code), '{}')
    into combined_codes
    from (
        select jsonb_array_elements_text(base_codes) as code
        union all
        select jsonb_array_elements_text(addition_codes) as code
    ) as all_codes;

    select rsg.snomed_code into child_snomed_code
    from tes_reporting_spec_groupers as rsg
    where rsg.canonical_url = conf.child_grouper_url and rsg.version = conf.child_grouper_version;

    insert into refinement_cache (snomed_code, jurisdiction_id, aggregated_codes, source_details)
    values (
        child_snomed_code,
        conf.jurisdiction_id,
        combined_codes,
        jsonb_build_object(
            'parent_version', parent_ver,
            'child_version', conf.child_grouper_version,
            'configuration_id', conf.id
        )
    )
    on conflict (snomed_code, jurisdiction_id) do update set
        aggregated_codes = excluded.aggregated_codes,
        source_details = excluded.source_details,
        updated_at = now();
end;
$$;

-- TRIGGER 2: a configuration changed (one row), or a parent grouper's codes changed (every
-- configuration below it, one at a time).
create function update_refinement_cache() returns trigger
language plpgsql as $$
declare
    conf configurations%rowtype;
begin
    if tg_table_name = 'configurations' then
        if tg_op = 'DELETE' then
            perform update_cache_for_configuration(old, true);
        else
            perform update_cache_for_configuration(new, false);
        end if;
    elsif tg_table_name = 'tes_condition_groupers' and tg_op = 'UPDATE' then
        for conf in
            select c.*
            from configurations as c
            inner join tes_condition_grouper_references as ref
                on c.child_grouper_url = ref.child_grouper_url
                and c.child_grouper_version = ref.child_grouper_version
            where ref.parent_grouper_url = new.canonical_url and ref.parent_grouper_version = new.version
        loop
            perform update_cache_for_configuration(conf, false);
        end loop;
    end if;
    return null;
end;
$$;

create trigger trigger_update_cache_on_config_change
after insert or update or delete on configurations
for each row execute function update_refinement_cache();

create trigger trigger_update_cache_on_grouper_change
after update on tes_condition_groupers
for each row execute function update_refinement_cache();
