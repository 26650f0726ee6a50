{#-
    Per payload (jurisdiction_id, condition_grouper_url), the fingerprint of everything its
    refiner_payloads row is built from: the jurisdiction's refinement_cache rows that belong to
    that condition (snomed_code and source_sha256, which covers the row's codes and their
    displays), the condition's release and title as each row sees it, and the eicr_sections
    seed. refiner_payloads rebuilds only the payloads whose fingerprint is not the one their
    row was written with, and deletes the payloads missing here.
-#}
with

members as (

    select * from {{ ref('int_refiner_payload_members') }}

),

sections as (

    select
        {{ rows_fingerprint(['code', 'name', 'versions', 'include', 'narrative', 'action', 'section_type']) }}
            as sections_fingerprint
    from {{ ref('eicr_sections') }}

)

select
    members.jurisdiction_id,
    members.condition_grouper_url,
    count(*) as member_rows,
    {{ rows_fingerprint([
        'members.snomed_code', 'members.source_sha256',
        'members.condition_grouper_version', 'members.condition_name'
    ]) }} || '/' || min(sections.sections_fingerprint) as inputs_fingerprint
from members
cross join sections
group by members.jurisdiction_id, members.condition_grouper_url
