"""A memory written as a turn's extraction writes it (the row and its vector in the index), for tests."""

from apps.memory.models import Memory
from apps.memory.services import memory_remember


def remember(user, character, text: str, *, kind: str = "fact", importance: float = 0.7, sources=()) -> Memory:
    return memory_remember(
        user_id=user.pk,
        character_id=character.pk,
        text=text,
        kind=kind,
        importance=importance,
        source_message_ids=list(sources),
    )
