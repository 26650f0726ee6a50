{{ config(severity='warn') }}
-- Codes a configuration both adds and excludes: the exclusion wins (the code is not in its
-- cache row), which is rarely what the author meant.
with

excluding as (

    select
        configuration_id,
        jurisdiction_id,
        child_grouper_url,
        excluded_bare_codes,
        excluded_system_codes,
        added_loinc_codes,
        added_snomed_codes,
        added_icd10_codes,
        added_rxnorm_codes
    from {{ ref('int_configurations_evaluated') }}
    where cardinality(excluded_bare_codes) + cardinality(excluded_system_codes) > 0

),

added as (
    {% for system_key in ['loinc', 'snomed', 'icd10', 'rxnorm'] %}
        select
            excluding.configuration_id,
            excluding.jurisdiction_id,
            excluding.child_grouper_url,
            excluding.excluded_bare_codes,
            excluding.excluded_system_codes,
            '{{ system_key }}' as system_key,
            added_codes.code
        from excluding
        cross join lateral unnest(excluding.added_{{ system_key }}_codes) as added_codes (code)
        {% if not loop.last %}union all{% endif %}
    {% endfor %}
)

select
    added.configuration_id,
    added.jurisdiction_id,
    added.child_grouper_url,
    added.system_key,
    added.code
from added
where
    added.code = any(added.excluded_bare_codes)
    or (added.system_key || '|' || added.code) = any(added.excluded_system_codes)
