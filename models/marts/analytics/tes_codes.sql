{#-
    The code dimension: one row per distinct (code_system, code) of every current grouper,
    with its display as TES publishes it (int_code_displays: trimmed, '' when none, the most
    recently loaded ValueSet version's when they disagree), its code system's URL, OID and name,
    and where the Refiner's code_system_sets puts it.
-#}
with

displays as (

    select
        system_key,
        code,
        display,
        system_url,
        set_key,
        set_system
    from {{ ref('int_code_displays') }}

),

code_systems as (

    select
        short_name,
        system_url,
        oid,
        name
    from {{ ref('code_systems') }}

),

valueset_counts as (

    select
        system_key,
        code,
        count(*) as valueset_count
    from {{ ref('int_grouper_concepts_keyed') }}
    group by system_key, code

)

select
    displays.system_key as code_system,
    displays.code,
    displays.display,
    code_systems.name as system_name,
    displays.set_key as code_system_set_key,
    displays.set_system as code_system_set_system,
    valueset_counts.valueset_count::integer as valueset_count,
    coalesce(code_systems.system_url, displays.system_url) as system_url,
    coalesce(
        code_systems.oid,
        case when displays.system_key like 'urn:oid:%' then substr(displays.system_key, 9) end
    ) as system_oid
from displays
left join code_systems
    on displays.system_key = code_systems.short_name
left join valueset_counts
    on
        displays.system_key = valueset_counts.system_key
        and displays.code = valueset_counts.code
