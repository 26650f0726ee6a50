{#-
    The fingerprint of a set of (system, code) pairs: how many there are and the exact sum of
    their 64-bit hashes. It does not depend on order or on how the set was assembled, so the
    fingerprint of base ∪ additions (disjoint) is the sum of the two fingerprints: a cache row's
    content hash costs a few additions instead of hashing thousands of codes per row.
-#}
{% macro code_pair_hash(system_key, code) -%}
    hashtextextended({{ system_key }} || chr(31) || {{ code }}, 0)
{%- endmacro %}

{#- SHA-256 (hex) of a fingerprint: the content_sha256 of refinement_cache rows. -#}
{% macro code_set_sha256(pair_count, pair_hash_sum) -%}
    {{ sha256_text("(" ~ pair_count ~ ")::text || ':' || (" ~ pair_hash_sum ~ ")::text") }}
{%- endmacro %}
