-- Every cache row's code_system_sets holds exactly its codes_by_system: the six keys (each a
-- list), and per key the same (code, system, display) entries as codes_by_system mapped through
-- int_code_displays (key, OID or URL, display; an added code TES does not list: its key's OID
-- and ""), each entry exactly the three fields, no null display. Counting per entry also
-- proves one entry per (system, code). Entry order is checked against the Python oracle.
with

cache_rows as (

    select
        snomed_code,
        jurisdiction_id,
        codes_by_system,
        code_system_sets
    from {{ ref('refinement_cache') }}

),

key_problems as (

    select
        snomed_code,
        jurisdiction_id,
        'code_system_sets does not hold the six keys as lists' as problem,
        null::text as set_key,
        null::text as code
    from cache_rows
    where
        (
            select array_agg(set_keys.set_key order by set_keys.set_key)
            from jsonb_object_keys(cache_rows.code_system_sets) as set_keys (set_key)
        ) is distinct from array['cvx', 'icd10', 'loinc', 'other', 'rxnorm', 'snomed']
        or exists (
            select 1
            from jsonb_each(cache_rows.code_system_sets) as set_lists (set_key, entries)
            where jsonb_typeof(set_lists.entries) <> 'array'
        )

),

expected as (

    select
        cache_rows.snomed_code,
        cache_rows.jurisdiction_id,
        system_codes.code,
        coalesce(displays.set_key, systems.system_key) as set_key,
        coalesce(displays.set_system, code_systems.oid) as set_system,
        coalesce(displays.display, '') as display,
        count(*) as entry_count
    from cache_rows
    cross join lateral jsonb_each(cache_rows.codes_by_system) as systems (system_key, codes)
    cross join lateral jsonb_array_elements_text(systems.codes) as system_codes (code)
    left join {{ ref('int_code_displays') }} as displays
        on
            systems.system_key = displays.system_key
            and system_codes.code = displays.code
    left join {{ ref('code_systems') }} as code_systems
        on systems.system_key = code_systems.short_name
    group by 1, 2, 3, 4, 5, 6

),

actual as (

    select
        cache_rows.snomed_code,
        cache_rows.jurisdiction_id,
        set_lists.set_key,
        entries.entry ->> 'code' as code,
        entries.entry ->> 'system' as set_system,
        entries.entry ->> 'display' as display,
        count(*) as entry_count,
        bool_and(
            jsonb_typeof(entries.entry -> 'display') = 'string'
            and (select count(*) from jsonb_object_keys(entries.entry)) = 3
        ) as well_formed
    from cache_rows
    cross join lateral jsonb_each(cache_rows.code_system_sets) as set_lists (set_key, entry_list)
    cross join
        lateral jsonb_array_elements(
            case when jsonb_typeof(set_lists.entry_list) = 'array' then set_lists.entry_list else '[]'::jsonb end
        ) as entries (entry)
    group by 1, 2, 3, 4, 5, 6

),

entry_problems as (

    select
        coalesce(expected.snomed_code, actual.snomed_code) as snomed_code,
        coalesce(expected.jurisdiction_id, actual.jurisdiction_id) as jurisdiction_id,
        case
            when actual.snomed_code is null then 'code missing from code_system_sets'
            when expected.snomed_code is null then 'code_system_sets holds a code codes_by_system lacks'
            when expected.entry_count <> 1 or actual.entry_count <> 1 then 'entry repeated'
            when not actual.well_formed then 'entry not exactly {code, display, system} with a string display'
        end as problem,
        coalesce(expected.set_key, actual.set_key) as set_key,
        coalesce(expected.code, actual.code) as code
    from expected
    full outer join actual
        on
            expected.snomed_code = actual.snomed_code
            and expected.jurisdiction_id = actual.jurisdiction_id
            and expected.set_key = actual.set_key
            and expected.code = actual.code
            and expected.set_system = actual.set_system
            and expected.display = actual.display

)

select * from key_problems
union all
select * from entry_problems
where problem is not null
