{#-
    The Refiner's code_system_sets (docs/codes.md): six fixed keys in this order, the first five
    named after a short name of the code_systems seed (whose OID is the key's `system`), `other`
    for every other system. The one list of them every model loops over.
-#}
{% macro code_system_set_keys() -%}
    {{ return(['loinc', 'snomed', 'rxnorm', 'icd10', 'cvx']) }}
{%- endmacro %}

{#-
    The code systems a Refiner configuration adds codes for (its loinc_codes, snomed_codes,
    icd10_codes and rxnorm_codes; loaders/land/schema.sql): the one list the configuration and
    cache models loop over (`added_<system>_codes`, `extra_<system>_codes`, ...).
-#}
{% macro configuration_code_systems() -%}
    {{ return(['loinc', 'snomed', 'icd10', 'rxnorm']) }}
{%- endmacro %}

{#- How many added codes a cache row's base lacks, over every configuration_code_systems():
    the sum of the cardinalities of `<relation>.extra_<system>_codes`. -#}
{% macro extra_code_count(relation) -%}
    {%- for system in configuration_code_systems() -%}
        {{ ' + ' if not loop.first }}cardinality({{ relation }}.extra_{{ system }}_codes)
    {%- endfor -%}
{%- endmacro %}

{#- The ValueSet types whose codes a condition grouper takes: its RS groupers, and with the var
    include_additional_context_codes its additional context groupers too. -#}
{% macro code_child_types() -%}
    {%- if var('include_additional_context_codes', false) | string | lower in ['true', '1', 'yes'] -%}
        ('reporting_spec_grouper', 'additional_context_grouper')
    {%- else -%}
        ('reporting_spec_grouper')
    {%- endif -%}
{%- endmacro %}

{#- 'true' or 'false': the var as text, for fingerprints. -#}
{% macro additional_context_codes_flag() -%}
    '{{ 'true' if var('include_additional_context_codes', false) | string | lower in ['true', '1', 'yes'] else 'false' }}'
{%- endmacro %}

{#- One code_system_sets entry. -#}
{% macro code_set_entry(code, display, set_system) -%}
    jsonb_build_object('code', {{ code }}, 'display', {{ display }}, 'system', {{ set_system }})
{%- endmacro %}

{#-
    code_system_sets per key of distinct (keys..., system_key, code) rows: every key present
    ('[]' when empty), entries ordered by system then code (bytewise) within each key, displays
    and each code's key and system from int_code_displays.
-#}
{% macro aggregate_code_system_sets(concepts, keys) -%}
    {%- set key_list = keys | join(', ') -%}
    select
    {%- for key in keys %}
        concepts_listed.{{ key }},
    {%- endfor %}
        jsonb_build_object(
    {%- for set_key in code_system_set_keys() + ['other'] %}
            '{{ set_key }}',
            coalesce(
                jsonb_agg(
                    {{ code_set_entry('concepts_listed.code', 'displays.display', 'displays.set_system') }}
                    order by concepts_listed.system_key collate "C", concepts_listed.code collate "C"
                ) filter (where displays.set_key = '{{ set_key }}'),
                '[]'::jsonb
            ){{ ',' if not loop.last }}
    {%- endfor %}
        ) as code_system_sets
    from {{ concepts }} as concepts_listed
    inner join {{ ref('int_code_displays') }} as displays
        on
            concepts_listed.system_key = displays.system_key
            and concepts_listed.code = displays.code
    group by
    {%- for key in keys %}
        concepts_listed.{{ key }}{{ ',' if not loop.last }}
    {%- endfor %}
{%- endmacro %}

{#- The empty code_system_sets: every key, no entries. -#}
{% macro empty_code_system_sets() -%}
    jsonb_build_object(
    {%- for set_key in code_system_set_keys() + ['other'] %}
        '{{ set_key }}', '[]'::jsonb{{ ',' if not loop.last }}
    {%- endfor %}
    )
{%- endmacro %}
