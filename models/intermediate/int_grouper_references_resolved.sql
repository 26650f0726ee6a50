{{ config(
    indexes=[
        {'columns': ['parent_valueset_id']},
        {'columns': ['child_valueset_id']},
    ],
) }}
{#-
    Every reference a current condition grouper makes, with what it points to: the current
    ValueSet with that url and version (resolved) or nothing (unresolved: not loaded, or no
    version given).
-#}
with

references_listed as (

    select
        parent_valueset_id,
        parent_grouper_url,
        parent_grouper_version,
        reference_text,
        child_grouper_url,
        child_grouper_version
    from {{ ref('int_valueset_references') }}
    where parent_grouper_type = 'condition_grouper'

),

valuesets as (

    select
        valueset_id,
        canonical_url,
        version,
        grouper_type
    from {{ ref('stg_tes__valuesets') }}

)

select
    references_listed.parent_valueset_id,
    valuesets.valueset_id as child_valueset_id,
    references_listed.parent_grouper_url,
    references_listed.parent_grouper_version,
    references_listed.child_grouper_url,
    references_listed.child_grouper_version,
    references_listed.reference_text,
    valuesets.grouper_type as child_type,
    valuesets.canonical_url is not null as is_resolved,
    case
        when references_listed.child_grouper_version is null then 'reference_has_no_version'
        when valuesets.canonical_url is null then 'child_not_loaded'
    end as unresolved_reason
from references_listed
left join valuesets
    on
        references_listed.child_grouper_url = valuesets.canonical_url
        and references_listed.child_grouper_version = valuesets.version
