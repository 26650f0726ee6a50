{#-
    Per condition grouper (canonical_url) and pair of consecutive TES releases: the codes the
    later release added and removed, per code system. A release is a condition grouper version;
    releases are ordered as versions (2.0.0 < 10.0.0), versions with non-numeric parts after the
    numeric ones, as text. A condition in either release of a pair has a row; display names are
    not compared (a renamed condition with the same codes has no change). codes_added_named and
    codes_removed_named list the same codes with their displays (int_code_displays), so that
    "what did 3.0.0 add to Dengue" reads as names.
-#}
with

condition_groupers as (

    select
        canonical_url,
        version,
        display_name,
        codes_by_system
    from {{ ref('tes_condition_groupers') }}

),

distinct_versions as (

    select distinct version
    from condition_groupers

),

releases as (

    select
        version,
        row_number() over (
            order by
                case
                    when version ~ '^[0-9]+(\.[0-9]+)*$'
                        then string_to_array(version, '.')::numeric[]
                end nulls last,
                version collate "C"
        ) as release_number
    from distinct_versions

),

release_pairs as (

    select
        previous_release.version as previous_version,
        current_release.version,
        previous_release.release_number as release_pair_number
    from releases as current_release
    inner join releases as previous_release
        on current_release.release_number = previous_release.release_number + 1

),

condition_codes as (

    select
        condition_groupers.canonical_url,
        condition_groupers.version,
        code_systems.key as code_system,
        system_codes.code
    from condition_groupers
    cross join lateral jsonb_each(condition_groupers.codes_by_system) as code_systems
    cross join lateral jsonb_array_elements_text(code_systems.value) as system_codes (code)

),

code_counts as (

    select
        canonical_url,
        version,
        count(*) as code_count
    from condition_codes
    group by canonical_url, version

),

pair_conditions as (

    select distinct
        release_pairs.release_pair_number,
        release_pairs.previous_version,
        release_pairs.version,
        condition_groupers.canonical_url
    from release_pairs
    inner join condition_groupers
        on condition_groupers.version in (release_pairs.previous_version, release_pairs.version)

),

pair_codes as (

    select
        pair_conditions.release_pair_number,
        pair_conditions.canonical_url,
        condition_codes.code_system,
        condition_codes.code,
        bool_or(condition_codes.version = pair_conditions.previous_version) as in_previous,
        bool_or(condition_codes.version = pair_conditions.version) as in_current
    from pair_conditions
    inner join condition_codes
        on
            pair_conditions.canonical_url = condition_codes.canonical_url
            and condition_codes.version in (pair_conditions.previous_version, pair_conditions.version)
    group by
        pair_conditions.release_pair_number,
        pair_conditions.canonical_url,
        condition_codes.code_system,
        condition_codes.code

),

changes_by_system as (

    select
        pair_codes.release_pair_number,
        pair_codes.canonical_url,
        pair_codes.code_system,
        array_agg(pair_codes.code order by pair_codes.code collate "C")
        filter (where pair_codes.in_current) as added_codes,
        array_agg(pair_codes.code order by pair_codes.code collate "C")
        filter (where pair_codes.in_previous) as removed_codes,
        jsonb_agg(
            jsonb_build_object('code', pair_codes.code, 'display', coalesce(displays.display, ''))
            order by pair_codes.code collate "C"
        ) filter (where pair_codes.in_current) as added_named,
        jsonb_agg(
            jsonb_build_object('code', pair_codes.code, 'display', coalesce(displays.display, ''))
            order by pair_codes.code collate "C"
        ) filter (where pair_codes.in_previous) as removed_named
    from pair_codes
    left join {{ ref('int_code_displays') }} as displays
        on
            pair_codes.code_system = displays.system_key
            and pair_codes.code = displays.code
    where pair_codes.in_previous <> pair_codes.in_current
    group by pair_codes.release_pair_number, pair_codes.canonical_url, pair_codes.code_system

),

changes as (

    select
        release_pair_number,
        canonical_url,
        jsonb_object_agg(code_system, to_jsonb(added_codes))
        filter (where added_codes is not null) as codes_added,
        jsonb_object_agg(code_system, to_jsonb(removed_codes))
        filter (where removed_codes is not null) as codes_removed,
        jsonb_object_agg(code_system, added_named)
        filter (where added_named is not null) as codes_added_named,
        jsonb_object_agg(code_system, removed_named)
        filter (where removed_named is not null) as codes_removed_named,
        sum(coalesce(cardinality(added_codes), 0)) as added_count,
        sum(coalesce(cardinality(removed_codes), 0)) as removed_count
    from changes_by_system
    group by release_pair_number, canonical_url

),

final as (

    select
        pair_conditions.canonical_url,
        pair_conditions.previous_version,
        pair_conditions.version,
        pair_conditions.release_pair_number,
        coalesce(current_grouper.display_name, previous_grouper.display_name) as display_name,
        previous_grouper.canonical_url is null as is_new,
        current_grouper.canonical_url is null as is_dropped,
        coalesce(changes.codes_added, '{}'::jsonb) as codes_added,
        coalesce(changes.codes_removed, '{}'::jsonb) as codes_removed,
        coalesce(changes.codes_added_named, '{}'::jsonb) as codes_added_named,
        coalesce(changes.codes_removed_named, '{}'::jsonb) as codes_removed_named,
        coalesce(changes.added_count, 0)::integer as added_count,
        coalesce(changes.removed_count, 0)::integer as removed_count,
        coalesce(previous_counts.code_count, 0)::integer as previous_code_count,
        coalesce(current_counts.code_count, 0)::integer as code_count
    from pair_conditions
    left join condition_groupers as previous_grouper
        on
            pair_conditions.canonical_url = previous_grouper.canonical_url
            and pair_conditions.previous_version = previous_grouper.version
    left join condition_groupers as current_grouper
        on
            pair_conditions.canonical_url = current_grouper.canonical_url
            and pair_conditions.version = current_grouper.version
    left join changes
        on
            pair_conditions.release_pair_number = changes.release_pair_number
            and pair_conditions.canonical_url = changes.canonical_url
    left join code_counts as previous_counts
        on
            pair_conditions.canonical_url = previous_counts.canonical_url
            and pair_conditions.previous_version = previous_counts.version
    left join code_counts as current_counts
        on
            pair_conditions.canonical_url = current_counts.canonical_url
            and pair_conditions.version = current_counts.version

)

select
    *,
    (is_new or is_dropped or added_count > 0 or removed_count > 0) as is_changed
from final
