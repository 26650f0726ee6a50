{{ config(indexes=[{'columns': ['canonical_url', 'version'], 'unique': true}, {'columns': ['snomed_code']}]) }}
{#- Every current reporting specification (RS) grouper with its codes in every system. -#}
with

rs_groupers as (

    select * from {{ ref('stg_tes__valuesets') }}
    where grouper_type = 'reporting_spec_grouper'

),

codes as (

    select * from {{ ref('int_valueset_codes_aggregated') }}

)

select
    rs_groupers.canonical_url,
    rs_groupers.version,
    rs_groupers.display_name,
    rs_groupers.snomed_code,
    rs_groupers.focus_snomed_code,
    rs_groupers.url_snomed_code,
    rs_groupers.resource_id,
    rs_groupers.valueset_name,
    {{ grouper_code_columns('codes') }},
    rs_groupers.load_id
from rs_groupers
left join codes
    on rs_groupers.valueset_id = codes.valueset_id
