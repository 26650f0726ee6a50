"""pytest suites; dbt singular tests live in tests/dbt/."""
