"""The analysis layer, the science: one pair's fetched frame tested at every horizon (stability
selection, LightGBM, held-out confirmation, SHAP), and the tests across pairs the report runs.

It imports neither Celery, Redis nor the BigQuery client (a contract in pyproject.toml), only
the warehouse's frames and plans, the settings and the domain; it fetches nothing itself. Callers
import its modules: `pair` (a pair's steps, sequenced by the runner's `pair.process_pair_all_horizons`),
`basis` and `width` (a pair's memory plan), `across_pairs`, `families` and `family_findings` (the
report's tests). This package re-exports nothing, so a caller of `families` does not load
LightGBM and SHAP.
"""
