"""Test doubles that speak real protocols (a local BigQuery REST endpoint over a DuckDB
warehouse) and test data (a Parquet export of real prices). Not part of the installed package."""
