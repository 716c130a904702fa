from apps.conversations.models import ChatSession, Message


def session_history(*, session_id, limit: int = 40) -> list[Message]:
    """The session's last `limit` messages, oldest first (failed ones included)."""
    rows = list(Message.objects.filter(session_id=session_id).order_by("-created_at")[:limit])
    rows.reverse()
    return rows


def session_latest(*, user, character) -> ChatSession | None:
    """The session a socket's `connect` opens for this user and character (the latest live one), if any."""
    return (
        ChatSession.objects.filter(user=user, character=character, deleted_at__isnull=True)
        .order_by("-updated_at")
        .first()
    )


def characters_talked_to(*, user) -> set[int]:
    """Ids of the characters the user has a live session with (one they can continue)."""
    qs = ChatSession.objects.filter(user=user, deleted_at__isnull=True)
    return set(qs.values_list("character_id", flat=True).distinct())


def session_get_for_turn(*, session_id) -> ChatSession | None:
    return (
        ChatSession.objects.select_related("character", "user").filter(pk=session_id, deleted_at__isnull=True).first()
    )
