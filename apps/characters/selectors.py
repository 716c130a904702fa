from django.db.models import Q, QuerySet

from apps.characters.models import Character


def character_list_published() -> QuerySet[Character]:
    return Character.objects.filter(is_published=True).select_related("voice").order_by("name")


def character_get_for_chat(*, name: str, include_unpublished: bool = False) -> Character | None:
    """The character a client asked for by slug (or display name), or None.

    With `include_unpublished` (see `character_drafts_visible`) drafts are found too.
    """
    if not isinstance(name, str) or not name.strip():
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
