"""Test doubles that speak real protocols: a local BigQuery REST endpoint over a DuckDB warehouse."""
