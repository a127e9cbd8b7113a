"""The report layer: a finished run's pair summaries turned into report.json (checked against
its generated schema), report.md and report.html, and read back as answers.

Callers import its modules: `build.write_report` (the run layer's last step), `answer`,
`comparison`, `feature_sets` (the CLI's commands) and `notebook.open_run` (the run's answers as
DataFrames, re-exported as `bqx_queue.open_run`). This package re-exports nothing, so the CLI
loads only the module a command needs.
"""
