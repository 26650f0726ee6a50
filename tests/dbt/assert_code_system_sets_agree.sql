-- Every cache row's code_system_sets holds exactly its codes_by_system (the six keys as lists,
-- the same codes with their displays and systems, well-formed entries): the macro
-- code_system_sets_problems over the whole cache. Tagged full_recomputation, like the whole-cache
-- recomputation: it runs in CI, in `refinery check` and in every `all` / `full_refresh` build; a
-- configurations or tes build checks the rows it wrote (assert_code_system_sets_written_rows_agree).
{{ config(tags=['full_recomputation']) }}
{{ code_system_sets_problems() }}
