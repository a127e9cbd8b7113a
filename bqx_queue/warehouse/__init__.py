"""The warehouse layer: where a run's rows come from (BigQuery, or an embedded DuckDB warehouse),
what reading them costs, and the one query per pair that reads them.

Callers import its modules: `source.open_source` and `interface.WarehouseSource` (any
warehouse), `catalog`, `sampling` and `sql` (what a run plans), `fetch` and `frame` (a pair's
rows as arrays), `extract_cache` and `shared` (rows kept in the artifact store), `budget` and
`billing` (cost), `synthetic` (the demo's warehouse). This package re-exports nothing: the
analysis imports `frame` and `sql`, and must not load the BigQuery client with them.
"""
