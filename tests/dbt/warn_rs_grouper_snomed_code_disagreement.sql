{{ config(severity='warn') }}
-- RS groupers whose useContext focus SNOMED code differs from their url's rs-grouper-<code>
-- suffix (the focus coding wins; worth a look).
select
    canonical_url,
    version,
    focus_snomed_code,
    url_snomed_code
from {{ ref('tes_reporting_spec_groupers') }}
where focus_snomed_code <> url_snomed_code
