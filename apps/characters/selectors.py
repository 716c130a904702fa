from django.db.models import Q, QuerySet

from apps.characters.models import Character, Voice


def character_list_published() -> QuerySet[Character]:
    return Character.objects.filter(is_published=True).select_related("voice").order_by("name")


def character_get_for_chat(*, name: str, include_unpublished: bool = False) -> Character | None:
    """The character a client asked for by slug (or display name), or None.

    Staff may talk to unpublished characters to try them before publishing.
    """
    if not isinstance(name, str) or not name.strip():
        return None
    qs = Character.objects.select_related("voice")
    if not include_unpublished:
        qs = qs.filter(is_published=True)
    name = name.strip()
    return qs.filter(slug__iexact=name).first() or qs.filter(Q(name__iexact=name)).order_by("pk").first()


def voice_spec_of(voice: Voice | None, language: str = "en") -> dict:
    """The TTS job's view of a voice (None: the shipped Piper voice)."""
    if voice is None:
        return {"engine": "piper", "model": "", "speaker": "", "language": language, "speed": 1.0}
    return {
        "engine": voice.engine,
        "model": voice.model,
        "speaker": voice.speaker,
        "language": voice.language,
        "speed": voice.speed,
    }
