import logging
from collections.abc import Callable

from django.core.files.base import ContentFile
from django.db import transaction
from django.utils.text import slugify

# Character cards in and out live in cardio.py; callers may take them from here with the other services.
from apps.characters.cardio import character_export_card, character_import_card  # noqa: F401
from apps.characters.models import Character, Voice
from apps.characters.selectors import greeting_audio_fresh, greeting_audio_key, voice_spec_of
from apps.core.audio import wav_bytes
from workers.dispatch import enqueue

log = logging.getLogger(__name__)

# (text, voice spec) → (mono s16le PCM, sample rate): the TTS engine, passed in by the batch job.
Synthesize = Callable[[str, dict], tuple[bytes, int]]


def greeting_audio_refresh(*, character: Character) -> bool:
    """Queue the rendering of the greeting audio (queue `batch`) if it is missing or stale; True if queued.

    Called when a character is saved (admin) or its voice changes; the job runs after the commit.
    """
    if greeting_audio_fresh(character=character) or (not character.greeting and not character.greeting_audio):
        return False
    character_id = character.pk
    transaction.on_commit(lambda: enqueue("workers.tts.tasks.greeting_render", character_id=character_id))
    return True


def voice_characters_refresh(*, voice: Voice) -> int:
    """A voice changed: re-render the greetings of the characters that speak with it; returns how many."""
    return sum(greeting_audio_refresh(character=c) for c in voice.characters.select_related("voice"))


def greeting_audio_render(*, character_id: int, synthesize: Synthesize) -> str:
    """Render and store the greeting audio of a character (the batch job's work). Idempotent: a fresh
    rendering is kept; a greeting removed drops the audio; a character changed during the rendering
    is left for the job its change queued. Returns what was done."""
    character = Character.objects.select_related("voice").filter(pk=character_id).first()
    if character is None:
        return "gone"
    if greeting_audio_fresh(character=character):
        return "fresh"
    if not character.greeting:
        _greeting_audio_store(character_id, key="", name="", old=character.greeting_audio.name)
        return "cleared"
    key = greeting_audio_key(character=character)
    pcm, rate = synthesize(character.greeting, voice_spec_of(character.voice, character.language))
    name = character.greeting_audio.storage.save(
        f"greetings/{character.slug}-{key[:12]}.wav", ContentFile(wav_bytes(pcm, rate))
    )
    with transaction.atomic():
        current = Character.objects.select_for_update(of=("self",)).select_related("voice").get(pk=character_id)
        if greeting_audio_key(character=current) != key:  # edited meanwhile: that save queued its own job
            character.greeting_audio.storage.delete(name)
            return "superseded"
        _greeting_audio_store(character_id, key=key, name=name, old=current.greeting_audio.name)
    return "rendered"


def _greeting_audio_store(character_id: int, *, key: str, name: str, old: str) -> None:
    # A queryset update: the job must not write back the other fields of the row it read.
    Character.objects.filter(pk=character_id).update(greeting_audio=name, greeting_audio_key=key)
    if old and old != name:
        storage = Character._meta.get_field("greeting_audio").storage
        transaction.on_commit(lambda: storage.delete(old))


def character_set_published(*, characters, published: bool) -> int:
    """Publish or unpublish characters; returns how many changed."""
    return (
        Character.objects.filter(pk__in=[c.pk for c in characters])
        .exclude(is_published=published)
        .update(is_published=published)
    )


@transaction.atomic
def character_duplicate(*, character: Character) -> Character:
    """Copy a character as an unpublished draft with a free slug ("anon-copy", "anon-copy-2", …)."""
    base = slugify(f"{character.slug}-copy")[:60]
    slug, n = base, 1
    while Character.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    copy = Character.objects.get(pk=character.pk)
    copy.pk = None
    copy.slug = slug
    copy.name = f"{character.name} (copy)"
    copy.is_published = False
    copy.save()
    return copy


@transaction.atomic
def demo_characters_ensure() -> list[str]:
    """Create the demo voice and characters that are missing; existing rows are left as staff edited them.

    Returns a line per created row.
    """
    from apps.characters.demo import DEMO_CHARACTERS, DEMO_VOICE
    from apps.characters.models import Voice

    created = []
    voice, made = Voice.objects.get_or_create(name=DEMO_VOICE["name"], defaults=DEMO_VOICE)
    if made:
        created.append(f"voice {voice.name}")
    for spec in DEMO_CHARACTERS:
        character, made = Character.objects.get_or_create(
            slug=spec["slug"], defaults={**spec, "voice": voice, "is_published": True}
        )
        if made:
            created.append(f"character {spec['slug']}")
        greeting_audio_refresh(character=character)  # rendered ahead of the first call, if missing or stale
    return created
