-- The whole cache recomputed with a different SQL formulation and compared row for row and
-- array for array (macros/tests/refinement_cache_recomputation.sql says how). Tagged
-- full_recomputation: a planned configurations or tes build (refinery/build_plan.py) leaves it
-- out and checks the rows it wrote instead
-- (assert_refinement_cache_written_rows_match_recomputation); `all` and `full_refresh` builds,
-- `refinery check` and CI run it.
{{ config(tags=['full_recomputation']) }}
{{ refinement_cache_recomputation_problems() }}
