-- The rules today's Refiner enforces on a payload's sections (../shared/refiner-payloads.md):
-- `reconstruct` and `keep_on_match` need `action: refine`; `reconstruct` only on the five
-- sections that can be rebuilt; the narrative-only and always-kept sections are `retain`.
-- Returns every seed row that breaks one, with the rule it breaks.
select
    code,
    name,
    narrative,
    action,
    case
        when narrative in ('reconstruct', 'keep_on_match') and action <> 'refine'
            then 'narrative ' || narrative || ' needs action refine'
        when
            narrative = 'reconstruct'
            and code not in ('30954-2', '11450-4', '11369-6', '29549-3', '18776-5')
            then 'narrative reconstruct is not available for this section'
        when
            code in ('10154-3', '29299-5', '10164-2', '10187-3', '83910-0', '88085-6')
            and action <> 'retain'
            then 'this section is always retained (action retain)'
    end as broken_rule
from {{ ref('eicr_sections') }}
where
    (narrative in ('reconstruct', 'keep_on_match') and action <> 'refine')
    or (
        narrative = 'reconstruct'
        and code not in ('30954-2', '11450-4', '11369-6', '29549-3', '18776-5')
    )
    or (
        code in ('10154-3', '29299-5', '10164-2', '10187-3', '83910-0', '88085-6')
        and action <> 'retain'
    )
