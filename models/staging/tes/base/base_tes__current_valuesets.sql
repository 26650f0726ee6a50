{#-
    The current content of every TES ValueSet: raw.tes_valuesets keeps every distinct content
    ever received, and per (canonical_url, version) the row with the highest last_seen_load_id
    is current ("latest load wins"; ties, which the loader never produces, by the highest
    valueset_id). A base model (dbt's structure guide): deduplication before staging, so that
    stg_tes__valuesets is one row per ValueSet and only renames and classifies.
-#}
with

source as (

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
    from {{ source('tes', 'tes_valuesets') }}

),

current_content as (

    select distinct on (canonical_url, version)
        valueset_id,
        canonical_url,
        version,
        resource,
        resource_sha256,
        source_file,
        load_id,
        last_seen_load_id,
        loaded_at
    from source
    order by canonical_url asc, version asc, last_seen_load_id desc, valueset_id desc

)

select * from current_content
