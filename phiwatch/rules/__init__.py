"""KQL rules as code: Sentinel analytic-rule templates in `kql/`, their fixtures, the shared
table schema, lint (template constraints and Kusto.Language) and local execution (duckdb-kql).

Modules: `template` (the rule format), `loader` (YAML files with line/column positions),
`fixtures` (per-rule test cases), `tables` (the schema file), `engine` (DuckDB), `lint`,
`kql_check` (the Node validator), `testing` (fixture runs) and `cli` (`phiwatch rules`).
"""
