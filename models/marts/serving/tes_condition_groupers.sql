{{ config(indexes=[{'columns': ['canonical_url', 'version'], 'unique': true}]) }}
{#-
    Every current condition grouper; its codes are the distinct union of the codes of the
    loaded RS groupers it references.
-#}
with

condition_groupers as (

    select * from {{ ref('stg_tes__valuesets') }}
    where grouper_type = 'condition_grouper'

),

codes as (

    select * from {{ ref('int_condition_grouper_codes_aggregated') }}

)

select
    condition_groupers.canonical_url,
    condition_groupers.version,
    condition_groupers.display_name,
    condition_groupers.resource_id,
    condition_groupers.valueset_name,
    {{ grouper_code_columns('codes') }},
    condition_groupers.load_id
from condition_groupers
left join codes
    on condition_groupers.valueset_id = codes.valueset_id
