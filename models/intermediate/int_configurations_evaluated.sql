{{ config(
    indexes=[
        {'columns': ['configuration_id'], 'unique': true},
        {'columns': ['jurisdiction_id', 'snomed_code']},
    ],
) }}
{#-
    Every configuration with the verdict of rule 4/5: whether it counts for the cache and, when
    not, the first reason why. Several counted candidates for one (snomed_code, jurisdiction_id):
    the latest updated_at wins, ties by the highest id; the others are superseded. A counted
    configuration also carries cache_source_sha256, the fingerprint of everything its cache row
    is built from (refinement_cache.source_sha256): the configuration's content (added and
    excluded codes included), its RS grouper's base, and the displays of its added codes.
    Exclusions are resolved here: excluded_bare_codes (removed from every system) and
    excluded_system_codes (`<system_key>|<code>`, the system given as a short key, a system URL
    or urn:oid:<oid> keyed like int_grouper_concepts_keyed).
-#}
with

configurations as (

    select * from {{ ref('stg_refiner__configurations') }}

),

code_systems as (

    select
        system_url,
        short_name,
        'urn:oid:' || oid as oid_url
    from {{ ref('code_systems') }}

),

displays as (

    select
        system_key,
        code,
        display
    from {{ ref('int_code_displays') }}

),

jurisdictions as (

    select distinct cast(routing_code as text) as routing_code
    from {{ ref('jurisdictions') }}

),

rs_groupers as (

    select
        canonical_url,
        version,
        snomed_code
    from {{ ref('stg_tes__valuesets') }}
    where grouper_type = 'reporting_spec_grouper'

),

bases as (

    select
        child_grouper_url,
        child_grouper_version,
        base_source_sha256
    from {{ ref('int_rs_grouper_parent_codes') }}

),

checked as (

    select
        configurations.*,
        rs_groupers.snomed_code,
        bases.base_source_sha256,
        case
            when not configurations.is_active then 'inactive'
            when jurisdictions.routing_code is null then 'unknown_jurisdiction'
            when rs_groupers.canonical_url is null then 'grouper_not_loaded'
            when rs_groupers.snomed_code is null then 'grouper_has_no_snomed_code'
            when bases.child_grouper_url is null then 'grouper_has_no_parent'
        end as ineligibility_reason
    from configurations
    left join jurisdictions
        on configurations.jurisdiction_id = jurisdictions.routing_code
    left join rs_groupers
        on
            configurations.child_grouper_url = rs_groupers.canonical_url
            and configurations.child_grouper_version = rs_groupers.version
    left join bases
        on
            configurations.child_grouper_url = bases.child_grouper_url
            and configurations.child_grouper_version = bases.child_grouper_version

),

resolved as (

    -- exclusions split by form and keyed; the displays of the added codes (they are part of the
    -- row's code_system_sets, so of its fingerprint)
    select
        checked.*,
        exclusions.excluded_bare_codes,
        exclusions.excluded_system_codes,
        added_displays.added_displays_text
    from checked
    cross join
        lateral (
            select
                cast(coalesce(
                    array_agg(listed.entry order by listed.entry collate "C")
                    filter (where strpos(listed.entry, '|') = 0),
                    '{}'
                ) as text[]) as excluded_bare_codes,
                cast(coalesce(
                    array_agg(
                        distinct
                        coalesce(
                            by_key.short_name, by_url.short_name, by_oid.short_name, split_part(listed.entry, '|', 1)
                        )
                        || '|' || substr(listed.entry, strpos(listed.entry, '|') + 1)
                    ) filter (where strpos(listed.entry, '|') > 0),
                    '{}'
                ) as text[]) as excluded_system_codes
            from unnest(checked.excluded_codes) as listed (entry)
            left join code_systems as by_key
                on split_part(listed.entry, '|', 1) = by_key.short_name
            left join code_systems as by_url
                on split_part(listed.entry, '|', 1) = by_url.system_url
            left join code_systems as by_oid
                on split_part(listed.entry, '|', 1) = by_oid.oid_url
        ) as exclusions
    -- per row: the displays of its added codes
    cross join lateral (  -- noqa: ST05
        select
            coalesce(string_agg(
                added.system_key || '|' || added.code || '|' || displays.display, chr(30)
                order by added.system_key, added.code collate "C"
            ), '') as added_displays_text
        from (
            select
                'loinc' as system_key,
                unnest(checked.added_loinc_codes) as code
            union all
            select
                'snomed' as system_key,
                unnest(checked.added_snomed_codes) as code
            union all
            select
                'icd10' as system_key,
                unnest(checked.added_icd10_codes) as code
            union all
            select
                'rxnorm' as system_key,
                unnest(checked.added_rxnorm_codes) as code
        ) as added
        inner join displays
            on added.system_key = displays.system_key and added.code = displays.code
    ) as added_displays

),

ranked as (

    select
        *,
        first_value(configuration_id) over candidates as winning_configuration_id
    from resolved
    window candidates as (
        partition by ineligibility_reason is null, snomed_code, jurisdiction_id
        order by updated_at desc nulls last, configuration_id desc
    )

)

select
    -- the columns every cache diff reads come first: a scan stops decoding each row there
    ineligibility_reason is null and winning_configuration_id = configuration_id as is_counted,
    snomed_code,
    jurisdiction_id,
    case
        when ineligibility_reason is null and winning_configuration_id = configuration_id
            then {{ sha256_text(
                "configuration_id::text || chr(31) || configuration_sha256 || chr(31) || base_source_sha256"
                ~ " || chr(31) || added_displays_text"
            ) }}
    end as cache_source_sha256,
    configuration_id,
    child_grouper_url,
    child_grouper_version,
    display_name_override,
    configuration_version,
    added_loinc_codes,
    added_snomed_codes,
    added_icd10_codes,
    added_rxnorm_codes,
    excluded_codes,
    excluded_bare_codes,
    excluded_system_codes,
    is_active,
    created_by,
    created_at,
    updated_at,
    configuration_sha256,
    coalesce(
        ineligibility_reason,
        case when winning_configuration_id <> configuration_id then 'superseded_by_newer_configuration' end
    ) as exclusion_reason,
    case
        when ineligibility_reason is null and winning_configuration_id <> configuration_id
            then winning_configuration_id
    end as superseded_by_configuration_id
from ranked
