{{ config(indexes=[{'columns': ['canonical_url', 'version'], 'unique': true}]) }}
{#-
    Every current additional context grouper (neither an RS nor a condition grouper) with its
    codes. Modelled for analysis; it does not feed refinement_cache.
-#}
with

context_groupers as (

    select * from {{ ref('stg_tes__valuesets') }}
    where grouper_type = 'additional_context_grouper'

),

codes as (

    select * from {{ ref('int_valueset_codes_aggregated') }}

)

select
    context_groupers.canonical_url,
    context_groupers.version,
    context_groupers.display_name,
    context_groupers.resource_id,
    context_groupers.valueset_name,
    {{ grouper_code_columns('codes') }},
    context_groupers.load_id
from context_groupers
left join codes
    on context_groupers.valueset_id = codes.valueset_id
