{#-
    The rows whose code_system_sets does not hold exactly their codes_by_system: the six keys,
    each a list; per key the same (code, system, display) entries as codes_by_system mapped
    through int_code_displays (key, OID or URL, display; an added code TES does not list: its
    key's OID and ""); each entry exactly the three fields, with a string display.
    Each side is reduced per row to the count and the sum of the 64-bit hashes of its entries
    (macro rows_fingerprint), so one entry missing, extra, repeated or different makes the row
    differ, without joining millions of entries: a failing row is named, then a query such as
    docs/codes.md's shows the entries. Entry order is checked against the Python oracle
    (tests/cache_oracle.py).
    `keys`: none for every row, else a SQL query returning the keys (snomed_code,
    jurisdiction_id) to check (the rows a build wrote: assert_code_system_sets_written_rows_agree).
-#}
{% macro code_system_sets_problems(keys=none) -%}
    {%- set in_scope = 'true' if keys is none else '(snomed_code, jurisdiction_id) in (' ~ keys ~ ')' -%}
    with

    cache_rows as (

        select
            snomed_code,
            jurisdiction_id,
            codes_by_system,
            code_system_sets
        from {{ ref('refinement_cache') }}
        where {{ in_scope }}

    ),

    expected as (

        select
            cache_rows.snomed_code,
            cache_rows.jurisdiction_id,
            {{ rows_fingerprint([
                "coalesce(displays.set_key, systems.system_key)",
                "system_codes.code",
                "coalesce(displays.set_system, code_systems.oid)",
                "coalesce(displays.display, '')",
            ]) }} as entries_fingerprint
        from cache_rows
        cross join lateral jsonb_each(cache_rows.codes_by_system) as systems (system_key, codes)
        cross join lateral jsonb_array_elements_text(systems.codes) as system_codes (code)
        left join {{ ref('int_code_displays') }} as displays
            on
                systems.system_key = displays.system_key
                and system_codes.code = displays.code
        left join {{ ref('code_systems') }} as code_systems
            on systems.system_key = code_systems.short_name
        group by cache_rows.snomed_code, cache_rows.jurisdiction_id

    ),

    row_keys as (

        -- the keys and the JSON type of each: six lists
        select
            snomed_code,
            jurisdiction_id,
            coalesce((
                select array_agg(set_lists.set_key || ':' || jsonb_typeof(set_lists.entry_list) order by set_lists.set_key)
                from jsonb_each(cache_rows.code_system_sets) as set_lists (set_key, entry_list)
            ) = array[
                'cvx:array', 'icd10:array', 'loinc:array', 'other:array', 'rxnorm:array', 'snomed:array'
            ]::text [], false) as keys_ok
        from cache_rows

    ),

    actual as (

        -- per row, only scalars leave the unnesting (grouped by hashing, a list never carried)
        select
            cache_rows.snomed_code,
            cache_rows.jurisdiction_id,
            {{ rows_fingerprint([
                "set_lists.set_key", "entries.entry ->> 'code'",
                "entries.entry ->> 'system'", "entries.entry ->> 'display'",
            ]) }} as entries_fingerprint,
            bool_and(
                jsonb_typeof(entries.entry -> 'display') = 'string'
                and (select count(*) from jsonb_object_keys(entries.entry)) = 3
            ) as well_formed
        from cache_rows
        cross join lateral jsonb_each(cache_rows.code_system_sets) as set_lists (set_key, entry_list)
        cross join lateral jsonb_array_elements(
            case when jsonb_typeof(set_lists.entry_list) = 'array' then set_lists.entry_list else '[]'::jsonb end
        ) as entries (entry)
        group by cache_rows.snomed_code, cache_rows.jurisdiction_id

    ),

    checked as (

        select
            cache_rows.snomed_code,
            cache_rows.jurisdiction_id,
            row_keys.keys_ok,
            coalesce(actual.well_formed, true) as well_formed,
            coalesce(expected.entries_fingerprint, '0:0') as expected_entries,
            coalesce(actual.entries_fingerprint, '0:0') as actual_entries
        from cache_rows
        left join expected
            on
                cache_rows.snomed_code = expected.snomed_code
                and cache_rows.jurisdiction_id = expected.jurisdiction_id
        left join actual
            on
                cache_rows.snomed_code = actual.snomed_code
                and cache_rows.jurisdiction_id = actual.jurisdiction_id
        inner join row_keys
            on
                cache_rows.snomed_code = row_keys.snomed_code
                and cache_rows.jurisdiction_id = row_keys.jurisdiction_id

    )

    select
        snomed_code,
        jurisdiction_id,
        expected_entries,
        actual_entries,
        case
            when not keys_ok then 'code_system_sets does not hold the six keys as lists'
            when not well_formed then 'an entry is not exactly {code, display, system} with a string display'
            else 'code_system_sets entries differ from codes_by_system mapped through int_code_displays'
        end as problem
    from checked
    where not keys_ok or not well_formed or expected_entries <> actual_entries
{%- endmacro %}
