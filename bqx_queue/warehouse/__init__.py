"""The warehouse layer: where rows come from (BigQuery, or an embedded DuckDB warehouse), what
reading them costs, and the one query per pair that reads them. It knows no run: a caller adds
labels and a budget reservation to its queries through a `fetch.QueryContext`.

Callers import its modules: `source.open_source` and `interface.WarehouseSource` (any
warehouse), `catalog`, `sampling` and `sql` (what a run plans), `fetch` and `frame` (a pair's
rows as arrays), `billing` (cost, and the dry-run table), `synthetic` (the demo's warehouse).
This package re-exports nothing: the analysis imports `frame` and `sql`, and must not load the
BigQuery client with them.
"""
