from django.db import transaction
from django.utils.text import slugify

from apps.characters.models import Character


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
        _, made = Character.objects.get_or_create(
            slug=spec["slug"], defaults={**spec, "voice": voice, "is_published": True}
        )
        if made:
            created.append(f"character {spec['slug']}")
    return created
