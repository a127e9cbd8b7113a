"""Celery settings from bqx settings. Reasons live in ../shared/DOMAIN.md section 4."""

from __future__ import annotations

from typing import Any

from bqx_queue.config import Settings
from bqx_queue.errors import ConfigError


def celery_config(settings: Settings) -> dict[str, Any]:
    """Return the Celery configuration; refuses settings under which a pair could run twice."""
    if settings.visibility_timeout_s <= settings.task_time_limit_s:
        raise ConfigError(
            f"visibility_timeout_s ({settings.visibility_timeout_s}) must exceed task_time_limit_s "
            f"({settings.task_time_limit_s}), or Redis redelivers a pair that is still running"
        )
    transport = {"visibility_timeout": settings.visibility_timeout_s, "socket_connect_timeout": 5}
    return {
        "broker_url": settings.broker_url,
        "result_backend": settings.backend_url,
        # JSON only: a pickled message from a shared broker is remote code execution
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        # a pair is acknowledged when it ends; a dead child's pair goes back to the queue
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "worker_concurrency": settings.concurrency,
        "worker_max_memory_per_child": settings.worker_max_memory_per_child_kib,
        "task_time_limit": settings.task_time_limit_s,
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
