"""Character Cards (the SillyTavern/Chub format): read V1, V2 and V3 cards from PNG or JSON, write V2 or V3.

A card file is hostile until measured: its size, the PNG's chunks, the card text and its JSON nesting
are checked before anything is decoded or parsed, and every field we map is type-checked, so a bad
file is one AppError with a stable code (invalid_card, card_too_large, unsupported_card) and a
message that names the field or the limit. Fields we do not map are kept in `unknown`, so an import
then export loses nothing. Pure: no database, no models; mapping a Card onto a Character is not here.
"""

import base64
import binascii
import json
import re
from dataclasses import dataclass, field
from typing import Literal

from apps.characters.pngtext import SIGNATURE, placeholder_png, png_text, png_with_text
from apps.core.errors import AppError
from apps.core.jsontext import bad_text_at, json_loads_strict, json_too_deep
from apps.realtime.protocol import ErrorCode

# Card PNGs from Chub and SillyTavern are mostly 0.2-4 MB (a 1024×1536 picture); 16 MiB leaves room
# for a large picture plus a V3 export's two copies of a 4 MiB card. It is also what one import holds.
CARD_MAX_BYTES = 16 * 1024 * 1024
# The card's JSON: a 1000-entry lorebook of 2 KB entries is 2 MB. Parsing 4 MiB of the worst shape
# (all short strings) peaks near 50 MB; CARD_MAX_CONTAINERS stops the worse one (tiny objects: 96 MB).
CARD_MAX_JSON_BYTES = 4 * 1024 * 1024
CARD_MAX_BASE64 = 4 * ((CARD_MAX_JSON_BYTES + 2) // 3)  # that JSON in base64, as PNG chunks carry it
CARD_MAX_CONTAINERS = 100_000  # `{` and `[` in the text (in strings too): 1000 entries use ~10 000
CARD_MAX_DEPTH = 32  # cards nest ~8 deep (an entry's extensions); json.loads recurses once a level
CARD_MAX_NAME_CHARS = 100  # Character.name holds 100
CARD_MAX_TEXT_CHARS = 100_000  # any other text field; 25 000 tokens, far over a prompt's budget
CARD_MAX_LIST_ITEMS = 256  # alternate greetings, tags, and the keys of one lorebook entry
CARD_MAX_BOOK_ENTRIES = 1_000

_OTHER_IMAGES = {
    "JPEG": re.compile(rb"\xff\xd8\xff"),
    "GIF": re.compile(rb"GIF8"),
    "WebP": re.compile(rb"RIFF.{4}WEBP", re.S),
}
_ZIP = b"PK\x03\x04"
_PNG_KEYWORDS = ("ccv3", "chara")
_SPECS = {"chara_card_v2": "v2", "chara_card_v3": "v3"}
_SPEC_OF = {"v2": ("chara_card_v2", "2.0"), "v3": ("chara_card_v3", "3.0")}
_TEXT_FIELDS = tuple(
    "description personality scenario first_mes mes_example creator_notes system_prompt post_history_instructions"
    " creator character_version".split()
)
_CARD_FIELDS = {"name", *_TEXT_FIELDS, "alternate_greetings", "tags", "character_book", "extensions"}
_BOOK_FIELDS = {"name", "description", "scan_depth", "token_budget", "recursive_scanning", "extensions", "entries"}
_ENTRY_OPTIONAL = tuple("case_sensitive name priority id comment selective secondary_keys constant position".split())
_ENTRY_FIELDS = {"keys", "content", "extensions", "enabled", "insertion_order", *_ENTRY_OPTIONAL}


@dataclass(frozen=True)
class BookEntry:
    """One lorebook entry: `content` goes into the prompt when one of `keys` appears in the chat.
    None: the card did not say (readers apply their defaults). `unknown`: fields not mapped (V3 `use_regex`…)."""

    keys: tuple[str, ...] = ()
    content: str = ""
    enabled: bool = True
    insertion_order: int = 0
    case_sensitive: bool | None = None
    name: str | None = None
    priority: int | None = None
    id: int | str | None = None
    comment: str | None = None
    selective: bool | None = None
    secondary_keys: tuple[str, ...] | None = None
    constant: bool | None = None
    position: str | None = None  # "before_char" or "after_char" in the spec; kept as the card says
    extensions: dict = field(default_factory=dict)
    unknown: dict = field(default_factory=dict)


@dataclass(frozen=True)
class CharacterBook:
    """A card's lorebook (`character_book`)."""

    entries: tuple[BookEntry, ...] = ()
    name: str | None = None
    description: str | None = None
    scan_depth: int | None = None
    token_budget: int | None = None
    recursive_scanning: bool | None = None
    extensions: dict = field(default_factory=dict)
    unknown: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Card:
    """A character card's data. `version` is what it was read from; `unknown` holds every field of `data`
    not mapped here (V3's nickname, assets, group_only_greetings…), written back as it came."""

    name: str
    description: str = ""
    personality: str = ""
    scenario: str = ""
    first_mes: str = ""
    alternate_greetings: tuple[str, ...] = ()
    mes_example: str = ""
    system_prompt: str = ""
    post_history_instructions: str = ""
    tags: tuple[str, ...] = ()
    creator: str = ""
    creator_notes: str = ""
    character_version: str = ""
    character_book: CharacterBook | None = None
    extensions: dict = field(default_factory=dict)
    unknown: dict = field(default_factory=dict)
    version: Literal["v1", "v2", "v3"] = "v2"


# --- reading -------------------------------------------------------------------------------------


def _invalid(message: str) -> AppError:
    return AppError(ErrorCode.INVALID_CARD, message)


def _too_large(message: str) -> AppError:
    return AppError(ErrorCode.CARD_TOO_LARGE, message)


def parse_card(data: bytes, *, filename: str | None = None) -> Card:
    """The card in a PNG or JSON file, told apart by its bytes (never by `filename`, which only names the
    file in messages). Raises AppError: invalid_card, card_too_large or unsupported_card."""
    try:
        return _card_from(_card_object(data))
    except AppError as exc:
        if filename:
            raise AppError(exc.code, f"{filename}: {exc.message}") from None
        raise


def _card_object(data: bytes) -> dict:
    if not data:
        raise _invalid("The file is empty.")
    if len(data) > CARD_MAX_BYTES:
        raise _too_large(f"The file is {len(data)} bytes; a card file may have {CARD_MAX_BYTES} (CARD_MAX_BYTES).")
    if data.startswith(SIGNATURE):
        return _json_object(_png_card_text(data), "The PNG's card")
    if data.startswith(_ZIP):
        raise AppError(ErrorCode.UNSUPPORTED_CARD, "CHARX (zip) cards are not read: export the card as PNG or JSON.")
    for kind, magic in _OTHER_IMAGES.items():
        if magic.match(data):
            raise AppError(ErrorCode.UNSUPPORTED_CARD, f"Cards are read from PNG images, not {kind}: send the PNG.")
    if not data.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{"):
        raise _invalid("The file is neither a PNG image nor a JSON object.")
    return _json_object(data, "The file")


def _png_card_text(png: bytes) -> bytes:
    texts = png_text(png, _PNG_KEYWORDS, max_bytes=CARD_MAX_BASE64)
    keyword = (
        "ccv3" if "ccv3" in texts else "chara" if "chara" in texts else None
    )  # ccv3 wins, as SillyTavern reads them
    if keyword is None:
        raise _invalid("The PNG holds no character card (no `chara` or `ccv3` text chunk).")
    try:
        return base64.b64decode(texts[keyword].strip(), validate=True)
    except (binascii.Error, ValueError):
        raise _invalid(f"The PNG's `{keyword}` chunk is not valid base64.") from None


def _json_object(raw: bytes, what: str) -> dict:
    if len(raw) > CARD_MAX_JSON_BYTES:
        raise _too_large(
            f"The card JSON is {len(raw)} bytes; the limit is {CARD_MAX_JSON_BYTES} (CARD_MAX_JSON_BYTES)."
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _invalid(f"{what} is not UTF-8 text (byte {exc.start}).") from None
    if text.count("{") + text.count("[") > CARD_MAX_CONTAINERS:
        raise _too_large(f"The card JSON has over {CARD_MAX_CONTAINERS} objects and lists (CARD_MAX_CONTAINERS).")
    if json_too_deep(text, CARD_MAX_DEPTH):
        raise _too_large(f"The card JSON nests deeper than {CARD_MAX_DEPTH} levels (CARD_MAX_DEPTH).")
    try:
        value = json_loads_strict(text)
    except json.JSONDecodeError as exc:
        raise _invalid(f"{what} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}.") from None
    except (ValueError, RecursionError) as exc:  # NaN, Infinity, a float out of range, an int of 4300+ digits
        reason = "a number has over 4300 digits" if "digits" in str(exc) else str(exc)
        raise _invalid(f"{what} is not valid JSON: {reason}.") from None
    if not isinstance(value, dict):
        raise _invalid(f"{what} is not a JSON object.")
    bad = bad_text_at(value)
    if bad is not None:
        where = bad.encode("ascii", "backslashreplace").decode()
        raise _invalid(f"`{where}` holds a NUL character or an unpaired surrogate, which cannot be stored.")
    return value


def _card_from(card: dict) -> Card:
    if "spec" not in card:  # V1: the fields at the top level
        if "name" not in card:
            raise _invalid("This JSON is not a character card: it has no `spec` (V2, V3) and no `name` (V1).")
        return _card_from_data(card, "", "v1")
    spec = card["spec"]
    if not isinstance(spec, str):
        raise _invalid("`spec` must be a string such as `chara_card_v2`.")
    if spec not in _SPECS:
        shown = spec[:40].encode("ascii", "backslashreplace").decode()
        raise AppError(
            ErrorCode.UNSUPPORTED_CARD,
            f"`spec` is {shown!r}; PersonaTalk reads chara_card_v2 and chara_card_v3 (and V1 cards, without `spec`).",
        )
    if not isinstance(card.get("data"), dict):
        raise _invalid("`data` must be an object holding the card's fields.")
    return _card_from_data(card["data"], "data.", _SPECS[spec])


def _card_from_data(data: dict, at: str, version: str) -> Card:
    name = _text(data, "name", at, limit=CARD_MAX_NAME_CHARS)
    if not name.strip():
        raise _invalid(f"The card has no name: `{at}name` is missing or empty.")
    book = data.get("character_book")
    return Card(
        name=name,
        **{key: _text(data, key, at) for key in _TEXT_FIELDS},
        alternate_greetings=_texts(data, "alternate_greetings", at) or (),
        tags=_texts(data, "tags", at) or (),
        character_book=None if book is None else _book(book, f"{at}character_book"),
        extensions=_object(data, "extensions", at),
        unknown={key: value for key, value in data.items() if key not in _CARD_FIELDS},
        version=version,
    )


def _book(book, at: str) -> CharacterBook:
    if not isinstance(book, dict):
        raise _invalid(f"`{at}` must be an object (a lorebook).")
    entries = book.get("entries")
    if entries is None:
        entries = []
    if not isinstance(entries, list):
        raise _invalid(f"`{at}.entries` must be a list.")
    if len(entries) > CARD_MAX_BOOK_ENTRIES:
        raise _too_large(
            f"`{at}.entries` has {len(entries)} entries; the limit is {CARD_MAX_BOOK_ENTRIES} (CARD_MAX_BOOK_ENTRIES)."
        )
    at += "."
    return CharacterBook(
        entries=tuple(_entry(entry, f"{at}entries[{n}]") for n, entry in enumerate(entries)),
        name=_text(book, "name", at, default=None),
        description=_text(book, "description", at, default=None),
        scan_depth=_int(book, "scan_depth", at),
        token_budget=_int(book, "token_budget", at),
        recursive_scanning=_bool(book, "recursive_scanning", at),
        extensions=_object(book, "extensions", at),
        unknown={key: value for key, value in book.items() if key not in _BOOK_FIELDS},
    )


def _entry(entry, at: str) -> BookEntry:
    if not isinstance(entry, dict):
        raise _invalid(f"`{at}` must be an object (a lorebook entry).")
    at += "."
    entry_id = entry.get("id")
    if entry_id is not None and (isinstance(entry_id, bool) or not isinstance(entry_id, int | str)):
        raise _invalid(f"`{at}id` must be a whole number or text, not {_json_type(entry_id)}.")
    return BookEntry(
        keys=_texts(entry, "keys", at) or (),
        content=_text(entry, "content", at),
        enabled=_bool(entry, "enabled", at, default=True),
        insertion_order=_int(entry, "insertion_order", at, default=0),
        case_sensitive=_bool(entry, "case_sensitive", at),
        name=_text(entry, "name", at, default=None),
        priority=_int(entry, "priority", at),
        id=entry_id,
        comment=_text(entry, "comment", at, default=None),
        selective=_bool(entry, "selective", at),
        secondary_keys=_texts(entry, "secondary_keys", at),
        constant=_bool(entry, "constant", at),
        position=_text(entry, "position", at, default=None),
        extensions=_object(entry, "extensions", at),
        unknown={key: value for key, value in entry.items() if key not in _ENTRY_FIELDS},
    )


# Field readers: a missing field or null takes the default; any other type is refused, naming the field.


def _text(obj: dict, key: str, at: str, *, default: str | None = "", limit: int = CARD_MAX_TEXT_CHARS):
    value = obj.get(key)
    return default if value is None else _checked_text(value, f"{at}{key}", limit)


def _checked_text(value, where: str, limit: int = CARD_MAX_TEXT_CHARS) -> str:
    if not isinstance(value, str):
        raise _invalid(f"`{where}` must be text, not {_json_type(value)}.")
    if len(value) > limit:
        raise _too_large(f"`{where}` has {len(value)} characters; the limit is {limit}.")
    return value


def _texts(obj: dict, key: str, at: str) -> tuple[str, ...] | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, list):
        raise _invalid(f"`{at}{key}` must be a list of text, not {_json_type(value)}.")
    if len(value) > CARD_MAX_LIST_ITEMS:
        raise _too_large(
            f"`{at}{key}` has {len(value)} items; the limit is {CARD_MAX_LIST_ITEMS} (CARD_MAX_LIST_ITEMS)."
        )
    return tuple(_checked_text(item, f"{at}{key}[{n}]") for n, item in enumerate(value))


def _int(obj: dict, key: str, at: str, *, default: int | None = None) -> int | None:
    value = obj.get(key)
    if value is None:
        return default
    if isinstance(value, float) and value.is_integer():
        return int(value)  # 100.0 from a writer that keeps numbers as floats
    if isinstance(value, bool) or not isinstance(value, int):
        kind = "a fraction" if isinstance(value, float) else _json_type(value)
        raise _invalid(f"`{at}{key}` must be a whole number, not {kind}.")
    return value


def _bool(obj: dict, key: str, at: str, *, default: bool | None = None) -> bool | None:
    value = obj.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise _invalid(f"`{at}{key}` must be true or false, not {_json_type(value)}.")
    return value


def _object(obj: dict, key: str, at: str) -> dict:
    value = obj.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _invalid(f"`{at}{key}` must be an object, not {_json_type(value)}.")
    return value


def _json_type(value) -> str:
    kinds = ((bool, "true/false"), (int | float, "a number"), (str, "text"), (list, "a list"), (dict, "an object"))
    return next((name for kind, name in kinds if isinstance(value, kind)), "null")


# --- writing -------------------------------------------------------------------------------------


def card_to_json(card: Card, *, version: Literal["v2", "v3"] = "v2") -> bytes:
    """The card as a V2 or V3 JSON file (UTF-8). Raises AppError(card_too_large) for a card that
    parse_card would refuse for its size."""
    text = json.dumps(_card_dict(card, version), ensure_ascii=False).encode()
    if len(text) > CARD_MAX_JSON_BYTES:
        raise _too_large(
            f"The card's JSON would be {len(text)} bytes, over CARD_MAX_JSON_BYTES ({CARD_MAX_JSON_BYTES})."
        )
    return text


def card_to_png(card: Card, *, image: bytes | None = None, version: Literal["v2", "v3"] = "v2") -> bytes:
    """`image` (a PNG; a 1×1 grey one if None) carrying the card in a `chara` tEXt chunk, plus a `ccv3` one
    for V3 as the ecosystem writes them (V3 readers take `ccv3`, older ones `chara`, a V2 copy).

    The image's old `chara`/`ccv3` chunks are dropped, its pixels are copied untouched. Raises AppError:
    invalid_card for a damaged PNG, unsupported_card for another image type, card_too_large."""
    if image is None:
        image = placeholder_png()
    elif len(image) > CARD_MAX_BYTES:
        raise _too_large(f"The image is {len(image)} bytes, over CARD_MAX_BYTES ({CARD_MAX_BYTES}).")
    elif not image.startswith(SIGNATURE):
        raise AppError(ErrorCode.UNSUPPORTED_CARD, "A card is written into a PNG image; this image is not a PNG.")
    texts = [("chara", base64.b64encode(card_to_json(card, version="v2")))]
    if version == "v3":
        texts.append(("ccv3", base64.b64encode(card_to_json(card, version="v3"))))
    png = png_with_text(image, texts, drop=_PNG_KEYWORDS)  # an old ccv3 would win over a new chara
    if len(png) > CARD_MAX_BYTES:
        raise _too_large(f"The card PNG would be {len(png)} bytes, over CARD_MAX_BYTES ({CARD_MAX_BYTES}).")
    return png


def _card_dict(card: Card, version: str) -> dict:
    if version not in _SPEC_OF:
        raise ValueError(f"version must be 'v2' or 'v3', not {version!r}")
    data = {
        "name": card.name,
        **{key: getattr(card, key) for key in _TEXT_FIELDS},
        "alternate_greetings": list(card.alternate_greetings),
        "tags": list(card.tags),
        "extensions": card.extensions,
    }
    if card.character_book is not None:
        data["character_book"] = _book_dict(card.character_book, version)
    data |= {key: value for key, value in card.unknown.items() if key not in data}
    if version == "v3":
        data.setdefault("group_only_greetings", [])  # required by V3
    spec, spec_version = _SPEC_OF[version]
    return {"spec": spec, "spec_version": spec_version, "data": data}


def _book_dict(book: CharacterBook, version: str) -> dict:
    optional = {
        "name": book.name,
        "description": book.description,
        "scan_depth": book.scan_depth,
        "token_budget": book.token_budget,
        "recursive_scanning": book.recursive_scanning,
    }
    out = {key: value for key, value in optional.items() if value is not None}
    out |= {"extensions": book.extensions, "entries": [_entry_dict(entry, version) for entry in book.entries]}
    return out | {key: value for key, value in book.unknown.items() if key not in out}


def _entry_dict(entry: BookEntry, version: str) -> dict:
    out = {
        "keys": list(entry.keys),
        "content": entry.content,
        "extensions": entry.extensions,
        "enabled": entry.enabled,
        "insertion_order": entry.insertion_order,
    }
    for key in _ENTRY_OPTIONAL:
        value = getattr(entry, key)
        if value is not None:
            out[key] = list(value) if isinstance(value, tuple) else value
    out |= {key: value for key, value in entry.unknown.items() if key not in out}
    if version == "v3":
        out.setdefault("use_regex", False)  # required by V3
    return out
