import hashlib
import json
import re
import wave

from django.db.models import Q, QuerySet

from apps.characters.models import Character, Voice


def character_list_published() -> QuerySet[Character]:
    return Character.objects.filter(is_published=True).select_related("voice").order_by("name")


def character_gallery(*, query: str = "", tag: str = "") -> QuerySet[Character]:
    """Published characters whose name or description holds `query`, carrying the tag `tag`."""
    qs = character_list_published()
    if query.strip():
        qs = qs.filter(Q(name__icontains=query.strip()) | Q(description__icontains=query.strip()))
    if tag.strip():  # a whole tag of the comma-separated list, not a part of one
        qs = qs.filter(tags__iregex=rf"(^|,)\s*{re.escape(tag.strip())}\s*(,|$)")
    return qs


def character_tags_published() -> list[str]:
    """Every tag of a published character, sorted, for the gallery's filter."""
    tags = {t.lower() for c in Character.objects.filter(is_published=True).only("tags") for t in c.tag_list}
    return sorted(tags)


def character_get_for_chat(*, name: str, include_unpublished: bool = False) -> Character | None:
    """The character a client asked for by slug (or display name), or None.

    With `include_unpublished` (see `character_drafts_visible`) drafts are found too.
    """
    if not isinstance(name, str) or not name.strip() or "\x00" in name:  # PostgreSQL text holds no NUL
        return None
    qs = Character.objects.select_related("voice")
    if not include_unpublished:
        qs = qs.filter(is_published=True)
    name = name.strip()
    return qs.filter(slug__iexact=name).first() or qs.filter(Q(name__iexact=name)).order_by("pk").first()


def character_drafts_visible(*, user) -> bool:
    """Whether `user` may talk to unpublished characters: staff who may change characters, to try
    a draft before publishing it (being staff alone is not enough: a draft may not be ready for them)."""
    return bool(user.is_active and user.is_staff and user.has_perm("characters.change_character"))


def characters_visible(*, user) -> QuerySet[Character]:
    """The characters `user` may see and talk to, by name: published ones, and drafts too for staff
    who may change characters (`character_drafts_visible`)."""
    rows = Character.objects.select_related("voice").order_by("name", "pk")
    return rows if character_drafts_visible(user=user) else rows.filter(is_published=True)


def character_get_visible(*, user, slug: str) -> Character | None:
    """The character with this slug, if `user` may see it (see `characters_visible`)."""
    if not isinstance(slug, str) or not slug or "\x00" in slug:  # PostgreSQL text holds no NUL
        return None
    return characters_visible(user=user).filter(slug=slug).first()


def voices_all() -> QuerySet[Voice]:
    """The voices characters can have, by name."""
    return Voice.objects.order_by("name")


def voice_get(*, name: str) -> Voice | None:
    return Voice.objects.filter(name=name).first() if isinstance(name, str) and name else None


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


def greeting_audio_key(*, character: Character) -> str:
    """What the greeting audio is rendered from (text and voice), as a key: a changed key means stale."""
    spec = {"text": character.greeting, "voice": voice_spec_of(character.voice, character.language)}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:32]


def greeting_audio_fresh(*, character: Character) -> bool:
    """Whether the character's stored greeting audio was rendered from its current greeting and voice."""
    return bool(character.greeting and character.greeting_audio) and (
        character.greeting_audio_key == greeting_audio_key(character=character)
    )


def greeting_audio_pcm(*, character: Character) -> tuple[bytes, int] | None:
    """The fresh greeting audio as (mono s16le PCM, sample rate), or None (none yet, or stale)."""
    if not greeting_audio_fresh(character=character):
        return None
    try:
        with character.greeting_audio.open("rb") as f, wave.open(f) as w:
            return w.readframes(w.getnframes()), w.getframerate()
    except (OSError, wave.Error, EOFError):  # the file went missing: as if never rendered
        return None
