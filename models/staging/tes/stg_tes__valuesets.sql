{#-
    The current content of every TES ValueSet (base_tes__current_valuesets: latest load wins),
    renamed and classified like the fetch step does. Triggering value sets are dropped here:
    nothing downstream uses them.
-#}
with

current_content as (

    select
        valueset_id,
        canonical_url,
        version,
        resource,
        resource_sha256,
        source_file,
        load_id,
        last_seen_load_id,
        loaded_at
    from {{ ref('base_tes__current_valuesets') }}

),

classified as (

    select
        current_content.*,
        coalesce(current_content.resource -> 'meta' -> 'profile', '[]'::jsonb)::text as profiles_text,
        (
            select codings.focus_coding ->> 'code'
            from
                jsonb_array_elements(
                    {{ jsonb_array_or_empty("current_content.resource -> 'useContext'") }}
                ) with ordinality as use_context (context_item, context_position)
            cross join
                lateral jsonb_array_elements(
                    {{ jsonb_array_or_empty("use_context.context_item -> 'valueCodeableConcept' -> 'coding'") }}
                ) with ordinality as codings (focus_coding, coding_position)
            where
                use_context.context_item -> 'code' ->> 'code' = 'focus'
                and codings.focus_coding ->> 'system' = 'http://snomed.info/sct'
            order by use_context.context_position, codings.coding_position
            limit 1
        ) as focus_snomed_code,
        nullif(substring(current_content.canonical_url from 'rs-grouper-([^/|]+)$'), '') as url_snomed_code
    from current_content

),

renamed as (

    select
        valueset_id,
        canonical_url,
        version,
        focus_snomed_code,
        url_snomed_code,
        resource,
        resource_sha256,
        source_file,
        load_id as first_load_id,
        last_seen_load_id as load_id,
        loaded_at,
        case
            when profiles_text like '%vsm-reportingspecificationgroupervalueset%'
                then 'reporting_spec_grouper'
            when profiles_text like '%vsm-conditiongroupervalueset%'
                then 'condition_grouper'
            else 'additional_context_grouper'
        end as grouper_type,
        resource ->> 'id' as resource_id,
        resource ->> 'name' as valueset_name,
        coalesce(nullif(resource ->> 'title', ''), resource ->> 'name', canonical_url) as display_name,
        resource ->> 'status' as valueset_status,
        case
            when profiles_text like '%vsm-reportingspecificationgroupervalueset%'
                then coalesce(focus_snomed_code, url_snomed_code)
        end as snomed_code
    from classified
    where profiles_text not like '%us-ph-triggering-valueset%'

)

select * from renamed
