{{ config(severity='warn') }}
-- RS groupers that several condition groupers of the same (latest) release reference: the
-- export maps each to one condition (the lowest canonical URL), which may not be the one the
-- jurisdiction meant; today's Refiner treats one RS grouper code under two conditions as an error.
select
    rs_grouper_url,
    rs_grouper_version,
    condition_grouper_url as exported_under,
    candidate_condition_count
from {{ ref('int_rs_grouper_condition_groupers') }}
where candidate_condition_count > 1
