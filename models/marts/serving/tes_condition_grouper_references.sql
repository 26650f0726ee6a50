{{ config(indexes=[
    {'columns': ['parent_grouper_url', 'parent_grouper_version']},
    {'columns': ['child_grouper_url', 'child_grouper_version']},
]) }}
{#-
    The links from condition groupers to the groupers they reference, only those that resolve
    to a loaded ValueSet (unresolved ones: tes_unresolved_references).
-#}
select distinct
    parent_grouper_url,
    parent_grouper_version,
    child_grouper_url,
    child_grouper_version,
    child_type
from {{ ref('int_grouper_references_resolved') }}
where is_resolved
