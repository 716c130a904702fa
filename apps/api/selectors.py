"""Readiness checks for /ready: each returns None when healthy or a short reason."""

import uuid

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection


def check_database() -> str | None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:  # any driver error means not ready
        return f"database: {exc.__class__.__name__}: {exc}"
    return None


def check_channel_layer() -> str | None:
    layer = get_channel_layer()

    async def roundtrip():
        channel = await layer.new_channel("ready.")
        probe = {"type": "ready.probe", "id": uuid.uuid4().hex}
        await layer.send(channel, probe)
        return (await layer.receive(channel)) == probe

    try:
        if not async_to_sync(roundtrip)():
            return "channel layer: probe message lost"
    except Exception as exc:
        return f"channel layer: {exc.__class__.__name__}: {exc}"
    return None


def check_workers() -> str | None:
    """Broker reachable and, in the scaled mode, a live worker consuming every READY_QUEUES queue."""
    if settings.TASKS_IN_PROCESS:
        return None
    from celery import current_app as app  # personatalk.celery's (importing it would pull in the workers)

    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
    except Exception as exc:
        return f"broker: {exc.__class__.__name__}: {exc}"
    replies = app.control.inspect(timeout=1.0).active_queues() or {}
    served = {q["name"] for queues in replies.values() for q in queues}
    missing = [q for q in settings.READY_QUEUES if q not in served]
    return f"no live worker for queue(s): {', '.join(missing)}" if missing else None
