{{ config(
    indexes=[{'columns': ['valueset_id'], 'unique': true}],
) }}
{#-
    The codes each current ValueSet lists itself (RS and additional context groupers), with the
    fingerprint of its (system, code) pairs (pair_count, pair_hash_sum: see
    macros/code_fingerprint.sql) so that condition groupers and cache bases with a single source
    can copy the row instead of aggregating the codes again, and its codes as the Refiner's
    code_system_sets (with displays: macros/code_system_sets.sql).
-#}
with

concepts as (

    select
        valueset_id,
        system_key,
        code
    from {{ ref('int_grouper_concepts_keyed') }}

),

per_valueset as (

    {{ aggregate_codes('concepts', ['valueset_id']) }}

),

all_codes as (

    {{ aggregate_all_codes('concepts', ['valueset_id']) }}

),

fingerprints as (

    {{ aggregate_code_fingerprints('concepts', ['valueset_id']) }}

),

code_sets as (

    {{ aggregate_code_system_sets('concepts', ['valueset_id']) }}

)

select
    per_valueset.valueset_id,
    {%- for short_name in array_code_systems().strip().split(',') %}
        per_valueset.{{ short_name }}_codes,
    {%- endfor %}
    all_codes.all_codes,
    per_valueset.codes_by_system,
    {{ sha256_text('per_valueset.codes_by_system::text') }} as content_sha256,
    fingerprints.pair_count,
    fingerprints.pair_hash_sum,
    code_sets.code_system_sets
from per_valueset
inner join all_codes
    on per_valueset.valueset_id = all_codes.valueset_id
inner join fingerprints
    on per_valueset.valueset_id = fingerprints.valueset_id
inner join code_sets
    on per_valueset.valueset_id = code_sets.valueset_id
