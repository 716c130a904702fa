"""Utterances handed from the socket edge to the ASR worker by id (Django cache: Redis when scaled)."""

import uuid

from django.core.cache import cache

_TTL_S = 600


def utterance_put(pcm: bytes) -> str:
    """Store an utterance's PCM for the ASR job; returns its id."""
    utterance_id = uuid.uuid4().hex
    cache.set(f"utterance:{utterance_id}", pcm, _TTL_S)
    return utterance_id


def utterance_get(utterance_id: str) -> bytes | None:
    return cache.get(f"utterance:{utterance_id}")


def utterance_delete(utterance_id: str) -> None:
    cache.delete(f"utterance:{utterance_id}")
