{#-
    Aggregate distinct (key columns..., system_key, code) rows into the code columns every
    grouper table and the cache share: per-system arrays, all_codes, codes_by_system and
    content_sha256 (SHA-256 of codes_by_system's text, so it changes exactly when a code does).
    Arrays are sorted with collation "C" (bytewise), the order used throughout the project.
    `concepts` names a CTE or relation whose rows are already distinct.
-#}
{% macro array_code_systems() -%}
    {#- The short names that get a column of their own (`<short_name>_codes`), comma-separated. -#}
    snomed,loinc,icd10,rxnorm,cvx,cpt
{%- endmacro %}

{% macro aggregate_codes(concepts, keys) -%}
    {%- set key_list = keys | join(', ') -%}
    select
    {%- for key in keys %}
        per_system.{{ key }},
    {%- endfor %}
    {%- for short_name in array_code_systems().strip().split(',') %}
        coalesce(min(per_system.codes) filter (where per_system.system_key = '{{ short_name }}'), '{}')::text []
            as {{ short_name }}_codes,
    {%- endfor %}
        jsonb_object_agg(per_system.system_key, to_jsonb(per_system.codes)) as codes_by_system
    from (
        select
            {{ key_list }},
            system_key,
            array_agg(code order by code collate "C")::text [] as codes
        from {{ concepts }}
        group by {{ key_list }}, system_key
    ) as per_system
    group by
    {%- for key in keys %}
        per_system.{{ key }}{{ ',' if not loop.last }}
    {%- endfor %}
{%- endmacro %}

{% macro aggregate_all_codes(concepts, keys) -%}
    {%- set key_list = keys | join(', ') -%}
    select
        {{ key_list }},
        array_agg(distinct code collate "C" order by code collate "C")::text [] as all_codes
    from {{ concepts }}
    group by {{ key_list }}
{%- endmacro %}

{% macro grouper_code_columns(codes) -%}
    {#- The code columns of a grouper table from an aggregated-codes relation (left-joined). -#}
    {%- for short_name in array_code_systems().strip().split(',') %}
    coalesce({{ codes }}.{{ short_name }}_codes, '{}')::text [] as {{ short_name }}_codes,
    {%- endfor %}
    coalesce({{ codes }}.all_codes, '{}')::text [] as all_codes,
    coalesce({{ codes }}.codes_by_system, '{}'::jsonb) as codes_by_system,
    coalesce({{ codes }}.content_sha256, {{ sha256_text("'{}'") }}) as content_sha256
{%- endmacro %}

{% macro aggregate_code_fingerprints(concepts, keys, prefix='') -%}
    {#- The code-set fingerprint (macros/code_fingerprint.sql) per key of distinct concept rows:
        `<prefix>pair_count` and `<prefix>pair_hash_sum`. -#}
    {%- set key_list = keys | join(', ') -%}
    select
        {{ key_list }},
        count(*) as {{ prefix }}pair_count,
        sum({{ code_pair_hash('system_key', 'code') }}) as {{ prefix }}pair_hash_sum
    from {{ concepts }}
    group by {{ key_list }}
{%- endmacro %}
