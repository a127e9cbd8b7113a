"""Celery settings from bqx settings. Reasons live in ../shared/DOMAIN.md section 4."""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from bqx_queue.config import Settings
from bqx_queue.domain import ConfigError

# The only content a worker accepts or sends: a pickled message from a shared broker is remote
# code execution, so anything else is refused at start-up even if a config module asks for it.
SAFE_CONTENT = "json"
CONTENT_SETTINGS = ("task_serializer", "result_serializer", "event_serializer")
ACCEPT_SETTINGS = ("accept_content", "result_accept_content")
_CERT_REQS = {"required": ssl.CERT_REQUIRED, "optional": ssl.CERT_OPTIONAL, "none": ssl.CERT_NONE}


def soft_time_limit(hard_limit_s: int) -> int:
    """Return the soft time limit: late enough to finish, early enough that Python code records
    its own failure before the hard limit kills the child (5%, at least 2 s, before it)."""
    return max(1, hard_limit_s - max(2, hard_limit_s // 20))


def tls_options(url: str) -> dict[str, Any] | None:
    """Return redis-py TLS options for a rediss:// URL (None for redis://).

    Certificates are verified unless the URL says `ssl_cert_reqs=none`; `ssl_ca_certs`,
    `ssl_certfile` and `ssl_keyfile` in the URL's query are passed on.
    """
    parts = urlsplit(url)
    if parts.scheme != "rediss":
        return None
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    reqs = query.get("ssl_cert_reqs", "required").lower().removeprefix("cert_")
    if reqs not in _CERT_REQS:
        raise ConfigError(f"ssl_cert_reqs must be required, optional or none, got {reqs!r}")
    options: dict[str, Any] = {"ssl_cert_reqs": _CERT_REQS[reqs]}
    for key in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile"):
        if key in query:
            options[key] = query[key]
    return options


def redis_client(url: str, timeout_s: float = 5.0, retry_s: float = 0.0) -> redis.Redis:
    """Return a Redis client for a broker URL (TLS options for rediss://), failing within
    `timeout_s` when the server does not answer; `retry_s` rides out a restarting Redis."""
    options: dict[str, Any] = tls_options(url) or {}
    if retry_s > 0:
        attempts = max(1, int(retry_s / 2))  # backoff capped at 2 s between attempts
        options |= {
            "retry": Retry(ExponentialBackoff(cap=2.0, base=0.2), attempts),
            "retry_on_error": [redis.ConnectionError, redis.TimeoutError],
        }
    return redis.Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s, **options)


def check_safe_content(conf: Mapping[str, Any]) -> None:
    """Raise ConfigError unless every serializer is JSON and only JSON is accepted."""
    for name in CONTENT_SETTINGS:
        value = conf.get(name)
        if value is not None and value != SAFE_CONTENT:
            raise ConfigError(f"{name} is {value!r}: only json is allowed (pickle from a broker runs code)")
    for name in ACCEPT_SETTINGS:
        accepted = [str(v).split("/")[-1] for v in (conf.get(name) or [SAFE_CONTENT])]
        if any(kind != SAFE_CONTENT for kind in accepted):
            raise ConfigError(f"{name} is {conf.get(name)!r}: only json is allowed (pickle from a broker runs code)")


def check_worker_config(conf: Mapping[str, Any]) -> None:
    """Raise ConfigError if a worker's effective configuration could run a pair twice or
    deserialize anything but JSON."""
    check_safe_content(conf)
    limit = conf.get("task_time_limit")
    for name in ("broker_transport_options", "result_backend_transport_options"):
        timeout = (conf.get(name) or {}).get("visibility_timeout")
        if limit and (timeout is None or timeout <= limit):
            raise ConfigError(
                f"{name} visibility_timeout ({timeout}) must exceed task_time_limit ({limit}), "
                "or Redis redelivers a pair that is still running"
            )


def celery_config(settings: Settings) -> dict[str, Any]:
    """Return the Celery configuration; refuses settings under which a pair could run twice."""
    if settings.visibility_timeout_s <= settings.task_time_limit_s:
        raise ConfigError(
            f"visibility_timeout_s ({settings.visibility_timeout_s}) must exceed task_time_limit_s "
            f"({settings.task_time_limit_s}), or Redis redelivers a pair that is still running"
        )
    transport = {"visibility_timeout": settings.visibility_timeout_s, "socket_connect_timeout": 5}
    config: dict[str, Any] = {
        "broker_url": settings.broker_url,
        "result_backend": settings.backend_url,
        # JSON only: a pickled message from a shared broker is remote code execution
        "task_serializer": SAFE_CONTENT,
        "result_serializer": SAFE_CONTENT,
        "event_serializer": SAFE_CONTENT,
        "accept_content": [SAFE_CONTENT],
        "result_accept_content": [SAFE_CONTENT],
        # a pair is acknowledged when it ends; a dead child's pair goes back to the queue
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "worker_concurrency": settings.concurrency,
        "worker_max_memory_per_child": settings.worker_max_memory_per_child_kib,
        "task_time_limit": settings.task_time_limit_s,
        # Python code past the soft limit records its own failure; the hard limit is for C++
        "task_soft_time_limit": soft_time_limit(settings.task_time_limit_s),
        "broker_transport_options": transport,
        "result_backend_transport_options": transport,
        "result_expires": settings.result_expires_s,
        "broker_connection_retry_on_startup": True,
        "broker_connection_timeout": 5,
        "redis_socket_connect_timeout": 5,
        "redis_socket_timeout": 30,
        # events for Flower and for `bqx status`
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "task_track_started": True,
        "result_extended": True,
    }
    broker_tls = tls_options(settings.broker_url)
    backend_tls = tls_options(settings.backend_url)
    if broker_tls:
        config["broker_use_ssl"] = broker_tls
    if backend_tls:
        config["redis_backend_use_ssl"] = backend_tls
    return config
