from apps.conversations.models import ChatSession, Message


def session_history(*, session_id, limit: int = 40) -> list[Message]:
    """The session's last `limit` messages, oldest first (failed ones included)."""
    rows = list(Message.objects.filter(session_id=session_id).order_by("-created_at")[:limit])
    rows.reverse()
    return rows


def session_get_for_turn(*, session_id) -> ChatSession | None:
    return (
        ChatSession.objects.select_related("character", "user").filter(pk=session_id, deleted_at__isnull=True).first()
    )
