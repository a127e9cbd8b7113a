"""`bqx flower`: Flower, the Celery dashboard, on the configured broker, always behind basic auth.

Flower can revoke tasks and shut workers down, so it is never started without credentials. They
come from the environment (never from the command line, where `ps` shows them to every user):
FLOWER_BASIC_AUTH="user:password[,user2:password2]", or FLOWER_USER and FLOWER_PASSWORD, the
same variables as ops/flower/flowerconfig.py and docker-compose.yml.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping

from bqx_queue.domain import ConfigError

DEFAULT_PORT = 5555
# Basic auth over plain HTTP should not cross a network: loopback unless asked otherwise.
DEFAULT_ADDRESS = "127.0.0.1"
# Scaled-out workers get a new node name per container or host restart; forget the ones that
# have been offline for an hour.
PURGE_OFFLINE_WORKERS_S = 3600


def basic_auth_entries(environ: Mapping[str, str]) -> list[str]:
    """Return Flower's basic-auth entries ("user:password") from the environment; raises
    ConfigError naming the variables to set when there are none or one is malformed."""
    combined = environ.get("FLOWER_BASIC_AUTH", "").strip()
    if combined:
        entries = [entry.strip() for entry in combined.split(",") if entry.strip()]
    else:
        user = environ.get("FLOWER_USER", "").strip()
        password = environ.get("FLOWER_PASSWORD", "")
        entries = [f"{user}:{password}"] if user and password else []
    if not entries:
        raise ConfigError(
            "Flower needs basic-auth credentials: set FLOWER_USER and FLOWER_PASSWORD, "
            "or FLOWER_BASIC_AUTH='user:password'"
        )
    for entry in entries:
        user, colon, password = entry.partition(":")
        if not (user and colon and password):
            raise ConfigError("FLOWER_BASIC_AUTH entries must be user:password (comma-separated), one is not")
    return entries


def flower_command(port: int = DEFAULT_PORT, address: str = DEFAULT_ADDRESS) -> list[str]:
    """Return the command that runs Flower on the bqx_queue Celery app (whose broker and result
    backend come from BQX_* settings, like the workers')."""
    return [
        sys.executable, "-m", "celery", "-A", "bqx_queue", "flower",
        f"--port={port}", f"--address={address}", f"--purge_offline_workers={PURGE_OFFLINE_WORKERS_S}",
    ]  # fmt: skip


def flower_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """Return the environment for Flower: the caller's, with credentials as FLOWER_BASIC_AUTH
    (which Flower reads itself)."""
    return dict(environ) | {"FLOWER_BASIC_AUTH": ",".join(basic_auth_entries(environ))}
