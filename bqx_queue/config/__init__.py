"""The settings layer: one typed `Settings` object, read from BQX_* variables and a TOML file.

Public surface: `Settings`, `load_settings` (this host's settings), `run_settings` (a run's
settings as its manifest pins them, on this host), `HOST_SETTINGS` (the fields a host keeps),
and `redact_url` / `redact_text` (a broker URL without its password, for logs and errors).
"""

from bqx_queue.config.settings import HOST_SETTINGS, Settings, load_settings, redact_text, redact_url, run_settings

__all__ = ["HOST_SETTINGS", "Settings", "load_settings", "redact_text", "redact_url", "run_settings"]
