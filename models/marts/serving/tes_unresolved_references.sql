{#-
    References of condition groupers that point to nothing loaded (or carry no version):
    reported by a warn-level test, never used downstream.
-#}
select
    parent_grouper_url,
    parent_grouper_version,
    reference_text,
    child_grouper_url,
    child_grouper_version,
    unresolved_reason
from {{ ref('int_grouper_references_resolved') }}
where not is_resolved
