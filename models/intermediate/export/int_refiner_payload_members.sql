{{ config(materialized='view') }}
{#-
    The refinement_cache rows that go into an export payload, each with the condition its RS
    grouper belongs to (int_rs_grouper_condition_groupers). One view for both readers:
    int_refiner_payload_inputs_fingerprinted fingerprints exactly the rows refiner_payloads
    builds from. A view: refiner_payloads reads only the changed jurisdictions' rows through it.
-#}
select
    refinement_cache.jurisdiction_id,
    refinement_cache.snomed_code,
    refinement_cache.source_sha256,
    refinement_cache.code_system_sets,
    conditions.condition_grouper_url,
    conditions.condition_grouper_version,
    conditions.condition_name
from {{ ref('refinement_cache') }} as refinement_cache
inner join {{ ref('int_rs_grouper_condition_groupers') }} as conditions
    on
        refinement_cache.source_details ->> 'child_grouper_url' = conditions.rs_grouper_url
        and refinement_cache.source_details ->> 'child_grouper_version' = conditions.rs_grouper_version
