-- The cache rows the latest write of refinement_cache wrote (macro
-- refinement_cache_written_keys), checked like assert_code_system_sets_agree (the same macro,
-- restricted to them, as assert_refinement_cache_written_rows_match_recomputation is). Tagged
-- written_rows: a planned configurations or tes build runs it instead of the whole-cache check.
{{ config(tags=['written_rows']) }}
{{ code_system_sets_problems(refinement_cache_written_keys()) }}
