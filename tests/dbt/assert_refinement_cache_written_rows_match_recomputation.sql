-- The cache keys the latest write of refinement_cache touched (macro
-- refinement_cache_written_keys: the rows it wrote, and in its jurisdictions the keys a row is
-- missing for or left over at), checked like assert_refinement_cache_matches_recomputation
-- (the same macro, restricted to them). Tagged written_rows: a planned configurations or tes
-- build (refinery/build_plan.py) runs it instead of the full recomputation, so a build
-- verifies the rows it wrote, not the whole cache; builds that run the full recomputation
-- leave it out.
{{ config(tags=['written_rows']) }}
{{ refinement_cache_recomputation_problems(refinement_cache_written_keys()) }}
