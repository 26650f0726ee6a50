-- The original's check "No Orphaned References": every link joins a loaded condition grouper
-- to a loaded RS or additional context grouper.
select
    refs.parent_grouper_url,
    refs.parent_grouper_version,
    refs.child_grouper_url,
    refs.child_grouper_version
from {{ ref('tes_condition_grouper_references') }} as refs
where
    not exists (
        select 1 from {{ ref('tes_condition_groupers') }} as parents
        where parents.canonical_url = refs.parent_grouper_url and parents.version = refs.parent_grouper_version
    )
    or not exists (
        select 1 from {{ ref('tes_reporting_spec_groupers') }} as rs_children
        where rs_children.canonical_url = refs.child_grouper_url and rs_children.version = refs.child_grouper_version
        union all
        select 1 from {{ ref('tes_additional_context_groupers') }} as context_children
        where
            context_children.canonical_url = refs.child_grouper_url
            and context_children.version = refs.child_grouper_version
    )
