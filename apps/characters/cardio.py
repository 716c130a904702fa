"""Character cards in and out of the database: a card file becomes a Character with its lorebook, and
a Character is written back as a V2 or V3 card (JSON, or PNG with its avatar).

How a card maps onto a Character:

    name → name (the slug made from it, made unique)    description → description (in the prompt)
    system_prompt → persona                              personality, scenario → personality, scenario
    first_mes → greeting ({{char}}/{{user}} filled in)  mes_example → example_dialogue (as written)
    alternate_greetings, post_history_instructions, creator, creator_notes, character_version → same names
    tags → tags (comma-separated)                        character_book entries → LorebookEntry rows
    the PNG's picture → avatar (without its card)       anything else → card_data, written back on export

Prompt text is kept as the card wrote it ({{char}}, <START>…): the prompt fills it in. The greeting is
shown, spoken and sent as it is, so it is filled in here; the card's own text is kept in card_data and
exported again while the greeting still reads the same.
"""

import io
import logging
from typing import Literal

from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from django.utils.text import slugify
from PIL import Image, UnidentifiedImageError

from apps.characters.cards import BookEntry, Card, CharacterBook, card_to_json, card_to_png, parse_card
from apps.characters.models import Character, LorebookEntry
from apps.characters.pngtext import SIGNATURE, png_with_text
from apps.core.errors import AppError
from apps.core.macros import macros_fill
from apps.realtime.protocol import ErrorCode

log = logging.getLogger(__name__)

# A card's picture becomes the avatar the gallery shows: Chub's are ~1024×1536; a side over this is
# refused (a browser decoding 20 000 × 20 000 pixels needs 1.6 GB).
AVATAR_MAX_SIDE = 4096
_SLUG_MAX = Character._meta.get_field("slug").max_length
_BOOK_FIELDS = ("name", "description", "scan_depth", "token_budget", "recursive_scanning")


# --- import ----------------------------------------------------------------------------------------


def character_import_card(*, data: bytes, filename_hint: str = "", publish: bool = False) -> Character:
    """Create a character, its lorebook and its avatar from a card file (V1/V2/V3, JSON or PNG).

    All or nothing: a card that cannot be read or stored raises AppError (invalid_card,
    card_too_large, unsupported_card; the message starts with `filename_hint`, which only names the
    file) and leaves no row and no file behind. A name already taken gets a slug of its own
    ("nova-2"). Unpublished unless `publish`.
    """
    try:
        card = parse_card(data, filename=filename_hint or None)
        avatar = _avatar_png(data) if data.startswith(SIGNATURE) else None
        character = _character_of(card, publish=publish)
        entries = [_entry_of(entry) for entry in card.character_book.entries] if card.character_book else []
        _validate(character, entries)
    except AppError as exc:
        if filename_hint and not exc.message.startswith(f"{filename_hint}: "):
            raise AppError(exc.code, f"{filename_hint}: {exc.message}") from None
        raise
    saved: list[str] = []
    try:
        with transaction.atomic():
            _save_with_free_slug(character)
            for entry in entries:
                entry.character = character
            LorebookEntry.objects.bulk_create(entries)
            if avatar is not None:
                character.avatar.save(f"{character.slug}.png", ContentFile(avatar), save=False)
                saved.append(character.avatar.name)
                character.save(update_fields=["avatar"])
            _greeting_audio_refresh(character=character)  # rendered ahead of the first call, once committed
    except BaseException:
        for name in saved:  # the rows are gone with the transaction; the picture must go too
            character.avatar.storage.delete(name)
        raise
    return character


def _greeting_audio_refresh(*, character: Character) -> None:
    from apps.characters.services import greeting_audio_refresh  # services re-exports this module's

    greeting_audio_refresh(character=character)


def _character_of(card: Card, *, publish: bool) -> Character:
    name = card.name.strip()
    greeting = macros_fill(card.first_mes, char=name)
    book, book_data = card.character_book, None
    if book is not None:  # its settings; an empty lorebook is kept too, to be exported as it came
        book_data = {key: getattr(book, key) for key in _BOOK_FIELDS if getattr(book, key) is not None}
        book_data |= {
            key: value for key, value in (("extensions", book.extensions), ("unknown", book.unknown)) if value
        }
        book_data = book_data if book_data or not book.entries else None
    card_data = {key: value for key, value in (("extensions", card.extensions), ("unknown", card.unknown)) if value}
    if greeting != card.first_mes:
        card_data["first_mes"] = card.first_mes
    if book_data is not None:
        card_data["character_book"] = book_data
    return Character(
        name=name,
        slug=_slug_base(name),
        description=card.description,
        description_in_prompt=True,  # a card's description is the character's definition
        persona=card.system_prompt,
        personality=card.personality,
        scenario=card.scenario,
        greeting=greeting,
        alternate_greetings=list(card.alternate_greetings),
        example_dialogue=card.mes_example,
        post_history_instructions=card.post_history_instructions,
        tags=", ".join(tag.strip() for tag in card.tags if tag.strip()),
        creator=card.creator,
        creator_notes=card.creator_notes,
        character_version=card.character_version,
        card_data=card_data,
        is_published=publish,
    )


def _entry_of(entry: BookEntry) -> LorebookEntry:
    card_data = {"unknown": entry.unknown} if entry.unknown else {}
    if entry.id is not None:
        card_data["id"] = entry.id
    return LorebookEntry(
        comment=entry.comment or "",
        name=entry.name or "",
        keys=list(entry.keys),
        secondary_keys=list(entry.secondary_keys or ()),
        content=entry.content,
        enabled=entry.enabled,
        constant=bool(entry.constant),
        selective=bool(entry.selective),
        case_sensitive=bool(entry.case_sensitive),
        insertion_order=entry.insertion_order,
        priority=entry.priority,
        position=entry.position or "",
        extensions=entry.extensions,
        card_data=card_data,
    )


def _validate(character: Character, entries: list[LorebookEntry]) -> None:
    """The rows' own checks (a field's length, a number's range), as the card names the field."""
    try:
        character.full_clean(exclude=["avatar"], validate_unique=False)
    except ValidationError as exc:
        raise AppError(ErrorCode.INVALID_CARD, _errors(exc, "")) from None
    for n, entry in enumerate(entries):
        try:
            entry.full_clean(exclude=["character"], validate_unique=False)
        except ValidationError as exc:
            raise AppError(ErrorCode.INVALID_CARD, _errors(exc, f"character_book.entries[{n}].")) from None


def _errors(exc: ValidationError, at: str) -> str:
    return " ".join(f"`{at}{field}`: {' '.join(messages)}" for field, messages in exc.message_dict.items())


def _avatar_png(png: bytes) -> bytes:
    """The card's picture as an avatar: the PNG without its card chunks, checked by Pillow (its header,
    every chunk's CRC; the pixels are not decoded) and held to AVATAR_MAX_SIDE."""
    picture = png_with_text(png, [], drop=("chara", "ccv3"))
    too_large = f"an avatar may have {AVATAR_MAX_SIDE} pixels a side"
    try:
        with Image.open(io.BytesIO(picture), formats=["PNG"]) as image:
            width, height = image.size
            if max(width, height) > AVATAR_MAX_SIDE:
                raise AppError(ErrorCode.CARD_TOO_LARGE, f"The card's picture is {width}×{height}; {too_large}.")
            image.verify()
    except Image.DecompressionBombError:
        raise AppError(ErrorCode.CARD_TOO_LARGE, f"The card's picture has too many pixels; {too_large}.") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        log.info("card picture refused by Pillow: %s", exc)
        raise AppError(
            ErrorCode.INVALID_CARD, "The PNG's picture is damaged: it cannot be used as an avatar."
        ) from None
    return picture


def _slug_base(name: str) -> str:
    return slugify(name)[: _SLUG_MAX - 6].strip("-") or "character"


def _save_with_free_slug(character: Character) -> None:
    """Save `character` under its slug, or the first of slug-2, slug-3… that is free (also when
    another import takes the same slug at the same moment)."""
    base = character.slug
    taken = set(Character.objects.filter(slug__startswith=base).values_list("slug", flat=True))
    n = 1
    while True:
        slug = base if n == 1 else f"{base}-{n}"
        n += 1
        if slug in taken:
            continue
        character.slug = slug
        try:
            with transaction.atomic():
                character.save()
            return
        except IntegrityError:
            if n > 1000:
                raise
            taken.add(slug)


# --- export ----------------------------------------------------------------------------------------


def character_export_card(
    *, character: Character, fmt: Literal["json", "png"] = "json", spec: Literal["v2", "v3"] = "v2"
) -> bytes:
    """The character as a card file: JSON, or a PNG of its avatar (a 1×1 grey picture without one)
    carrying the card; V2, or V3 (whose PNG carries a V2 copy too, for older readers).

    What an imported card had that no field holds comes back as it came. Raises AppError:
    card_too_large for a character too large for a card, invalid_field for another fmt or spec."""
    if fmt not in ("json", "png") or spec not in ("v2", "v3"):
        raise AppError(ErrorCode.INVALID_FIELD, "A card is exported as json or png, spec v2 or v3.")
    card = character_card(character=character)
    if fmt == "json":
        return card_to_json(card, version=spec)
    return card_to_png(card, image=_avatar_for_export(character), version=spec)


def character_card(*, character: Character) -> Card:
    """The card that describes `character` (see the module docstring for the mapping)."""
    extra = character.card_data or {}
    raw_greeting = extra.get("first_mes")
    same_greeting = raw_greeting is not None and macros_fill(raw_greeting, char=character.name) == character.greeting
    entries = tuple(_book_entry(entry) for entry in character.lorebook_entries.order_by("insertion_order", "pk"))
    book_extra = extra.get("character_book")
    book = None
    if entries or book_extra is not None:
        book_extra = book_extra or {}
        book = CharacterBook(
            entries=entries,
            **{key: book_extra[key] for key in _BOOK_FIELDS if key in book_extra},
            extensions=book_extra.get("extensions", {}),
            unknown=book_extra.get("unknown", {}),
        )
    return Card(
        name=character.name,
        description=character.description,
        personality=character.personality,
        scenario=character.scenario,
        first_mes=raw_greeting if same_greeting else character.greeting,
        alternate_greetings=tuple(character.alternate_greetings),
        mes_example=character.example_dialogue,
        system_prompt=character.persona,
        post_history_instructions=character.post_history_instructions,
        tags=tuple(character.tag_list),
        creator=character.creator,
        creator_notes=character.creator_notes,
        character_version=character.character_version,
        character_book=book,
        extensions=extra.get("extensions", {}),
        unknown=extra.get("unknown", {}),
    )


def _book_entry(entry: LorebookEntry) -> BookEntry:
    return BookEntry(
        keys=tuple(entry.keys),
        content=entry.content,
        enabled=entry.enabled,
        insertion_order=entry.insertion_order,
        case_sensitive=entry.case_sensitive,
        name=entry.name or None,
        priority=entry.priority,
        id=entry.card_data.get("id"),
        comment=entry.comment or None,
        selective=entry.selective,
        secondary_keys=tuple(entry.secondary_keys),
        constant=entry.constant,
        position=entry.position or None,
        extensions=entry.extensions,
        unknown=entry.card_data.get("unknown", {}),
    )


def _avatar_for_export(character: Character) -> bytes | None:
    """The avatar as PNG bytes (another format, uploaded in the admin, converted), or None without one."""
    if not character.avatar:
        return None
    try:
        with character.avatar.storage.open(character.avatar.name, "rb") as f:
            data = f.read()
    except OSError:  # the file went missing: exported as if there were none
        log.warning("character %s: avatar %s cannot be read", character.pk, character.avatar.name)
        return None
    if data.startswith(SIGNATURE):
        return data
    try:
        with Image.open(io.BytesIO(data)) as image:
            out = io.BytesIO()
            image.save(out, format="PNG")
            return out.getvalue()
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        log.warning("character %s: avatar %s is not a readable image", character.pk, character.avatar.name)
        return None
