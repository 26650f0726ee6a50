{{ config(severity='warn') }}
-- References of condition groupers to ValueSets that are not loaded (or carry no version).
select
    parent_grouper_url,
    parent_grouper_version,
    reference_text,
    unresolved_reason
from {{ ref('tes_unresolved_references') }}
