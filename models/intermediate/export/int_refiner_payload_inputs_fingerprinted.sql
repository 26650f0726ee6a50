{#-
    Per jurisdiction, the fingerprint of everything its refiner_payloads rows are built from:
    its refinement_cache rows that belong to a condition (snomed_code and source_sha256, which
    covers the row's codes and their displays), the condition each belongs to (URL, release,
    title) and the eicr_sections seed. refiner_payloads rebuilds only the jurisdictions whose
    fingerprint is not the one their rows were written with, and deletes the rows of the
    jurisdictions missing here.
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
    count(*) as member_rows,
    {{ rows_fingerprint([
        'members.snomed_code', 'members.source_sha256', 'members.condition_grouper_url',
        'members.condition_grouper_version', 'members.condition_name'
    ]) }} || '/' || min(sections.sections_fingerprint) as inputs_fingerprint
from members
cross join sections
group by members.jurisdiction_id
