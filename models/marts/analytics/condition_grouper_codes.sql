{{ config(
    post_hook=['{{ analyze_relation() }}'],
    indexes=[
        {'columns': ['code', 'code_system']},
        {'columns': ['canonical_url', 'version']},
    ],
) }}
{#-
    Every code of every current condition grouper, one row per (condition grouper version,
    code system, code): the distinct union of the codes of the loaded RS groupers it references
    (the codes tes_condition_groupers holds in arrays, one row each). Answers "which conditions
    contain code X" through the btree index on (code, code_system), ~50x fewer rows than the
    per-jurisdiction arrays of refinement_cache; a jurisdiction's own additions are in the
    configurations mart (docs/analytics.md has the query).
-#}
with

rs_children as (

    select distinct
        parent_valueset_id,
        child_valueset_id
    from {{ ref('int_grouper_references_resolved') }}
    where is_resolved and child_type = 'reporting_spec_grouper'

),

condition_groupers as (

    select
        valueset_id,
        canonical_url,
        version,
        display_name
    from {{ ref('stg_tes__valuesets') }}
    where grouper_type = 'condition_grouper'

),

grouper_codes as (

    select distinct
        rs_children.parent_valueset_id,
        child_concepts.system_key,
        child_concepts.code
    from rs_children
    inner join {{ ref('int_grouper_concepts_keyed') }} as child_concepts
        on rs_children.child_valueset_id = child_concepts.valueset_id

)

select
    cast(condition_groupers.canonical_url as text) as canonical_url,
    cast(condition_groupers.version as text) as version,  -- noqa: RF04
    cast(condition_groupers.display_name as text) as display_name,
    cast(grouper_codes.system_key as text) as code_system,
    cast(grouper_codes.code as text) as code
from grouper_codes
inner join condition_groupers
    on grouper_codes.parent_valueset_id = condition_groupers.valueset_id
