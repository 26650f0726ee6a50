-- The cache rows of the jurisdictions the latest write of refinement_cache recomputed, checked
-- like assert_refinement_cache_matches_recomputation (the same macro, restricted to them by
-- the macro refinement_cache_written_jurisdictions). Tagged written_rows: a planned
-- configurations or tes build (refinery/build_plan.py) runs it instead of the full
-- recomputation, so a one-configuration edit verifies its jurisdiction's rows, not the whole
-- cache; builds that run the full recomputation leave it out.
{{ config(tags=['written_rows']) }}
{{ refinement_cache_recomputation_problems(refinement_cache_written_jurisdictions()) }}
