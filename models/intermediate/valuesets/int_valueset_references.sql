{#-
    One row per ValueSet reference (compose.include[].valueSet[]) of a current ValueSet,
    split into the referenced url and version on the last `|` (no `|`: version is null).
-#}
with

compose_includes as (

    select
        valueset_id,
        canonical_url,
        version,
        grouper_type,
        valueset_references
    from {{ ref('int_valueset_compose_includes') }}

),

references_listed as (

    select distinct
        compose_includes.valueset_id,
        compose_includes.canonical_url,
        compose_includes.version,
        compose_includes.grouper_type,
        referenced.reference_text
    from compose_includes
    cross join lateral jsonb_array_elements_text(compose_includes.valueset_references) as referenced (reference_text)
    where nullif(referenced.reference_text, '') is not null

)

select
    valueset_id as parent_valueset_id,
    canonical_url as parent_grouper_url,
    version as parent_grouper_version,
    grouper_type as parent_grouper_type,
    reference_text,
    case
        when strpos(reference_text, '|') = 0 then reference_text
        else left(reference_text, length(reference_text) - strpos(reverse(reference_text), '|'))
    end as child_grouper_url,
    case
        when strpos(reference_text, '|') = 0 then null
        else nullif(right(reference_text, strpos(reverse(reference_text), '|') - 1), '')
    end as child_grouper_version
from references_listed
