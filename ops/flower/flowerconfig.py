"""Flower settings for bqx-queue.

Loaded with `celery -A bqx_queue flower --conf=/etc/bqx-queue/flowerconfig.py` (the image puts
this file there; the systemd unit expects the same path). Flower runs the file with Tornado's
`parse_config_file`: every top-level name that matches a Flower option sets it, and a name that
matches none is ignored without a word, so tests/test_compose.py checks the names below against
Flower's options. Command-line flags still override what is set here.

Credentials come from the environment, never from this file:
  FLOWER_BASIC_AUTH="user:password[,user2:password2]"   or   FLOWER_USER + FLOWER_PASSWORD.
Without them Flower refuses to start: the dashboard can revoke tasks and shut down workers, so it
must not be served without authentication. (Flower's /metrics and /healthcheck stay open: that
is Flower's own behaviour, and Prometheus scrapes /metrics.)
"""

import os


def _is_user_and_password(entry: str) -> bool:
    user, colon, password = entry.partition(":")
    return bool(user and colon and password)


def _basic_auth_from_environment() -> list[str]:
    """Return Flower's basic_auth list ("user:password" entries), or exit naming what is missing."""
    combined = os.environ.get("FLOWER_BASIC_AUTH", "").strip()
    if combined:
        entries = [entry.strip() for entry in combined.split(",") if entry.strip()]
    else:
        user = os.environ.get("FLOWER_USER", "").strip()
        password = os.environ.get("FLOWER_PASSWORD", "")
        entries = [f"{user}:{password}"] if user and password else []
    if not entries or not all(_is_user_and_password(entry) for entry in entries):
        # SystemExit prints this one line and stops Flower before it opens its port.
        raise SystemExit(
            "flowerconfig.py: Flower needs basic-auth credentials: set FLOWER_USER and "
            "FLOWER_PASSWORD, or FLOWER_BASIC_AUTH='user:password' (each entry user:password, "
            "comma-separated)"
        )
    return entries


basic_auth = _basic_auth_from_environment()

# Keep task history across Flower restarts. The path is a volume in compose (FLOWER_DB is set
# there) and the unit's StateDirectory on a systemd host.
persistent = True
db = os.environ.get("FLOWER_DB", "/var/lib/bqx-flower/flower.db")
# Save every minute too, not only at a clean shutdown, so a crash loses at most a minute.
state_save_interval = 60_000  # milliseconds

# A run is 28 pair tasks and one report: 10,000 tasks hold hundreds of runs and keep the
# pickled state (and the time to save it) small.
max_tasks = 10_000

# Scaled-out workers get a new node name per container (worker@<container id>); forget the ones
# that have been offline for an hour instead of listing every one that ever existed.
purge_offline_workers = 3600  # seconds
