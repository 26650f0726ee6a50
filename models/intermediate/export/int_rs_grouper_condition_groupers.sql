{#-
    The condition each reporting specification (RS) grouper belongs to for the export: one row
    per RS grouper (canonical_url, version) referenced by a loaded condition grouper. Its
    condition is a condition grouper of the latest loaded release that references it (releases
    compared numerically, 3.0.0 after 2.0.0; then the most recent load); when two different
    condition groupers of that release reference it, the lowest canonical URL (bytewise) wins
    and candidate_condition_count says how many there were (warn_rs_grouper_in_several_conditions).
-#}
with

rs_references as (

    select distinct
        parent_valueset_id,
        child_grouper_url,
        child_grouper_version
    from {{ ref('int_grouper_references_resolved') }}
    where is_resolved and child_type = 'reporting_spec_grouper'

),

condition_groupers as (

    select
        valueset_id,
        canonical_url,
        version,
        display_name,
        {{ release_order('version') }} as release_order
    from {{ ref('stg_tes__valuesets') }}
    where grouper_type = 'condition_grouper'

),

candidates as (

    select
        rs_references.child_grouper_url,
        rs_references.child_grouper_version,
        condition_groupers.canonical_url,
        condition_groupers.version,
        condition_groupers.display_name,
        condition_groupers.release_order
    from rs_references
    inner join condition_groupers
        on rs_references.parent_valueset_id = condition_groupers.valueset_id

),

ranked as (

    select
        *,
        row_number() over (
            partition by child_grouper_url, child_grouper_version
            order by release_order desc, version collate "C" desc, canonical_url collate "C" asc
        ) as candidate_rank,
        dense_rank() over (
            partition by child_grouper_url, child_grouper_version
            order by release_order desc, version collate "C" desc
        ) as release_rank
    from candidates

),

latest_release as (

    select
        child_grouper_url,
        child_grouper_version,
        count(distinct canonical_url) as candidate_condition_count
    from ranked
    where release_rank = 1
    group by child_grouper_url, child_grouper_version

)

select
    ranked.child_grouper_url as rs_grouper_url,
    ranked.child_grouper_version as rs_grouper_version,
    ranked.canonical_url as condition_grouper_url,
    ranked.version as condition_grouper_version,
    ranked.display_name as condition_name,
    latest_release.candidate_condition_count
from ranked
inner join latest_release
    on
        ranked.child_grouper_url = latest_release.child_grouper_url
        and ranked.child_grouper_version = latest_release.child_grouper_version
where ranked.candidate_rank = 1
