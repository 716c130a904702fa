"""Hostile character card files, built at test time with struct and zlib (no files checked in).

Each case is (name, bytes, code, says): the error code parse_card must raise for it, and a piece of
the message that tells a person what was wrong. The builders are used by the tests' good cards too.
"""

import base64
import functools
import json
import random
import struct
import zlib
from dataclasses import dataclass

from apps.characters import cards as c
from apps.characters.pngtext import PNG_MAX_CHUNKS

SIGNATURE = b"\x89PNG\r\n\x1a\n"
MiB = 1024 * 1024


@dataclass(frozen=True)
class Case:
    name: str
    data: bytes
    code: str
    says: str  # found in the message


def chunk(kind: bytes, data: bytes, *, length: int | None = None, crc: int | None = None) -> bytes:
    """A PNG chunk; `length` and `crc` may lie."""
    real_crc = zlib.crc32(kind + data)
    return struct.pack(">I", len(data) if length is None else length) + kind + data + struct.pack(">I", crc or real_crc)


IHDR = chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0))
IDAT = chunk(b"IDAT", zlib.compress(b"\0\x80"))
IEND = chunk(b"IEND", b"")


def png(*chunks: bytes, end: bool = True) -> bytes:
    """A 1×1 PNG with `chunks` after its pixels."""
    return SIGNATURE + IHDR + IDAT + b"".join(chunks) + (IEND if end else b"")


def text(keyword: str, value: bytes) -> bytes:
    return chunk(b"tEXt", keyword.encode("latin-1") + b"\0" + value)


def ztxt(keyword: str, compressed: bytes, method: bytes = b"\0") -> bytes:
    return chunk(b"zTXt", keyword.encode() + b"\0" + method + compressed)


def itxt(keyword: str, value: bytes, *, compressed: bool) -> bytes:
    return chunk(b"iTXt", keyword.encode() + b"\0" + (b"\1\0" if compressed else b"\0\0") + b"en\0\0" + value)


def b64(card: dict | bytes) -> bytes:
    raw = card if isinstance(card, bytes) else json.dumps(card).encode()
    return base64.b64encode(raw)


def v2(**data) -> dict:
    return {"spec": "chara_card_v2", "spec_version": "2.0", "data": {"name": "Nova", **data}}


def v3(**data) -> dict:
    return {"spec": "chara_card_v3", "spec_version": "3.0", "data": {"name": "Nova", **data}}


def card_png(card: dict | bytes, keyword: str = "chara") -> bytes:
    return png(text(keyword, b64(card)))


def as_json(card: dict) -> bytes:
    return json.dumps(card).encode()


def deflated(byte: bytes, size: int) -> bytes:
    """zlib data that inflates to `size` copies of `byte`, compressed a MiB at a time (a bomb)."""
    packer, block = zlib.compressobj(9), byte * MiB
    return b"".join(packer.compress(block) for _ in range(size // MiB)) + packer.flush()


def book(*entries: dict, **fields) -> dict:
    return {"entries": list(entries), **fields}


def entry(**fields) -> dict:
    return {"keys": ["moon"], "content": "The moon is far.", "enabled": True, "insertion_order": 1, **fields}


@functools.cache
def hostile() -> tuple[Case, ...]:
    noise = random.Random(12).randbytes(50_000)
    good_png = card_png(v2(description="A guide."))
    bomb = deflated(b"A", 64 * MiB)  # 64 MiB of valid base64 letters from ~64 KB
    bad_crc = text("chara", b64(v2()))[:-4] + b"\0\0\0\0"
    cases = [
        # not a card at all
        Case("empty file", b"", "invalid_card", "empty"),
        Case("random bytes", noise, "invalid_card", "neither a PNG image nor a JSON object"),
        Case("100k '[' (JSON, not an object)", b"[" * 100_000, "invalid_card", "neither"),
        Case("JSON array", b"[1, 2]", "invalid_card", "neither"),
        Case("JSON number", b"42", "invalid_card", "neither"),
        Case("CHARX zip", b"PK\x03\x04" + noise[:100], "unsupported_card", "CHARX"),
        Case("JPEG", b"\xff\xd8\xff\xe0" + noise[:100], "unsupported_card", "JPEG"),
        Case("WebP", b"RIFF\0\0\0\0WEBPVP8 " + noise[:100], "unsupported_card", "WebP"),
        # broken PNG structure
        Case("PNG signature only", SIGNATURE, "invalid_card", "cut short"),
        Case("PNG cut in half", good_png[: len(good_png) // 2], "invalid_card", "cut short"),
        Case("PNG without IEND", png(text("chara", b64(v2())), end=False), "invalid_card", "IEND"),
        Case("bad CRC on the chara chunk", png(bad_crc), "invalid_card", "CRC"),
        Case(
            "bad CRC on IDAT",
            SIGNATURE + IHDR + IDAT[:-4] + b"\0\0\0\0" + text("chara", b64(v2())) + IEND,
            "invalid_card",
            "IDAT chunk at byte 33 fails its CRC",
        ),
        Case("first chunk not IHDR", SIGNATURE + IDAT + IHDR + text("chara", b64(v2())) + IEND, "invalid_card", "IHDR"),
        Case("chunk type not letters", png(chunk(b"t\0Xt", b"x")), "invalid_card", "4 letters"),
        Case(
            "chunk declares 0x7fffffff bytes",
            png(struct.pack(">I", 0x7FFFFFFF) + b"tEXtchara\0AAAA"),
            "invalid_card",
            "declares 2147483647 bytes but only",
        ),
        Case(
            "chunk declares 0xffffffff bytes",
            png(struct.pack(">I", 0xFFFFFFFF) + b"tEXtchara\0AAAA"),
            "invalid_card",
            "2^31-1",
        ),
        Case("too many chunks", png(*[text("Comment", b"x")] * PNG_MAX_CHUNKS), "card_too_large", "PNG_MAX_CHUNKS"),
        # the card's text chunk
        Case("PNG without chara/ccv3", png(text("Software", b"paint")), "invalid_card", "no `chara` or `ccv3`"),
        Case("bad base64", png(text("chara", b"!!not base64!!")), "invalid_card", "base64"),
        Case(
            "ccv3 broken, chara good (ccv3 wins)",
            png(text("chara", b64(v2())), text("ccv3", b"%%%")),
            "invalid_card",
            "`ccv3` chunk is not valid base64",
        ),
        Case("base64 of text that is not JSON", card_png(b"hello world"), "invalid_card", "not valid JSON"),
        Case("base64 of a JSON array", card_png(b"[1, 2]"), "invalid_card", "not a JSON object"),
        Case("base64 of invalid UTF-8", card_png(b'{"name": "\xff\xfe"}'), "invalid_card", "not UTF-8"),
        Case(
            "tEXt over CARD_MAX_BASE64",
            png(text("chara", b"A" * (c.CARD_MAX_BASE64 + 4))),
            "card_too_large",
            "more than",
        ),
        Case("zTXt bomb", png(ztxt("chara", bomb)), "card_too_large", "inflates to more than"),
        Case("iTXt bomb", png(itxt("ccv3", bomb, compressed=True)), "card_too_large", "inflates to more than"),
        Case("zTXt cut short", png(ztxt("chara", zlib.compress(b64(v2()))[:-10])), "invalid_card", "cut short"),
        Case("zTXt not zlib", png(ztxt("chara", b"not zlib at all")), "invalid_card", "not valid zlib"),
        Case("zTXt unknown method", png(ztxt("chara", zlib.compress(b64(v2())), b"\7")), "invalid_card", "method"),
        Case("iTXt without its fields", png(chunk(b"iTXt", b"chara\0\1\0en")), "invalid_card", "malformed"),
        # JSON files that lie about size or shape
        Case("file over CARD_MAX_BYTES", b"{" + b" " * c.CARD_MAX_BYTES, "card_too_large", "CARD_MAX_BYTES"),
        Case(
            "JSON over CARD_MAX_JSON_BYTES",
            as_json(v2(description="a" * c.CARD_MAX_JSON_BYTES)),
            "card_too_large",
            "CARD_MAX_JSON_BYTES",
        ),
        Case("100k '[' inside an object", b'{"a": ' + b"[" * 100_000, "card_too_large", "CARD_MAX_CONTAINERS"),
        Case(
            "deep nesting in extensions",
            as_json(v2(extensions={"x": json.loads("[" * 40 + "]" * 40)})),
            "card_too_large",
            "deeper than 32",
        ),
        Case("deep nesting in a PNG", card_png(b'{"spec": ' + b"[" * 5000), "card_too_large", "deeper than 32"),
        Case(
            "many tiny objects",
            as_json(v2(extensions={"x": [{}] * (c.CARD_MAX_CONTAINERS + 1)})),
            "card_too_large",
            "CARD_MAX_CONTAINERS",
        ),
        Case("invalid UTF-8 JSON file", b'{"name": "\xff\xfe"}', "invalid_card", "not UTF-8"),
        Case("broken JSON", b'{"name": ', "invalid_card", "not valid JSON"),
        Case("NaN", b'{"spec": "chara_card_v2", "data": {"name": "N", "x": NaN}}', "invalid_card", "not valid JSON"),
        Case("an int of 5000 digits", b'{"name": "N", "x": ' + b"9" * 5000 + b"}", "invalid_card", "over 4300 digits"),
        Case("NUL in the description", as_json(v2(description="a\0b")), "invalid_card", "`data.description`"),
        Case("unpaired surrogate in a key", b'{"name": "N", "\\ud800": 1}', "invalid_card", "unpaired surrogate"),
        # the card's shape
        Case("spec chara_card_v4", as_json({**v2(), "spec": "chara_card_v4"}), "unsupported_card", "chara_card_v4"),
        Case("spec a number", as_json({**v2(), "spec": 2}), "invalid_card", "`spec` must be a string"),
        Case("data not an object", as_json({**v2(), "data": "Nova"}), "invalid_card", "`data` must be an object"),
        Case("no spec and no name", as_json({"description": "x"}), "invalid_card", "no `spec`"),
        Case("missing name", as_json({**v2(), "data": {"description": "x"}}), "invalid_card", "`data.name`"),
        Case("blank name", as_json(v2(name="  ")), "invalid_card", "no name"),
        Case("V1 with a blank name", as_json({"name": ""}), "invalid_card", "`name` is missing or empty"),
        Case("name a number", as_json(v2(name=7)), "invalid_card", "`data.name` must be text, not a number"),
        Case("tags a string", as_json(v2(tags="a,b")), "invalid_card", "`data.tags` must be a list of text"),
        Case("a tag a number", as_json(v2(tags=["a", 2])), "invalid_card", "`data.tags[1]` must be text"),
        Case("a greeting null", as_json(v2(alternate_greetings=[None])), "invalid_card", "alternate_greetings[0]"),
        Case("extensions a list", as_json(v2(extensions=[])), "invalid_card", "`data.extensions` must be an object"),
        Case("character_book text", as_json(v2(character_book="x")), "invalid_card", "`data.character_book`"),
        Case(
            "entries not a list",
            as_json(v2(character_book={"entries": {}})),
            "invalid_card",
            "`data.character_book.entries` must be a list",
        ),
        Case("an entry not an object", as_json(v2(character_book=book("x"))), "invalid_card", "entries[0]`"),
        Case(
            "keys not strings",
            as_json(v2(character_book=book(entry(keys=["a", 1])))),
            "invalid_card",
            "`data.character_book.entries[0].keys[1]` must be text",
        ),
        Case(
            "insertion_order true",
            as_json(v2(character_book=book(entry(insertion_order=True)))),
            "invalid_card",
            "insertion_order` must be a whole number",
        ),
        Case("enabled 'yes'", as_json(v2(character_book=book(entry(enabled="yes")))), "invalid_card", "true or false"),
        Case(
            "id a list",
            as_json(v2(character_book=book(entry(id=[1])))),
            "invalid_card",
            "id` must be a whole number or text, not a list",
        ),
        Case(
            "scan_depth 1.5",
            as_json(v2(character_book=book(scan_depth=1.5))),
            "invalid_card",
            "scan_depth` must be a whole number, not a fraction",
        ),
        # the card's limits
        Case("name of 101 characters", as_json(v2(name="n" * 101)), "card_too_large", "the limit is 100"),
        Case(
            "description over CARD_MAX_TEXT_CHARS",
            as_json(v2(description="d" * (c.CARD_MAX_TEXT_CHARS + 1))),
            "card_too_large",
            f"the limit is {c.CARD_MAX_TEXT_CHARS}",
        ),
        Case(
            "too many lorebook entries",
            as_json(v2(character_book=book(*[entry()] * 1001))),
            "card_too_large",
            "CARD_MAX_BOOK_ENTRIES",
        ),
        Case(
            "too many keys in an entry",
            as_json(v2(character_book=book(entry(keys=["k"] * 257)))),
            "card_too_large",
            "CARD_MAX_LIST_ITEMS",
        ),
        Case("too many tags", as_json(v2(tags=["t"] * 257)), "card_too_large", "CARD_MAX_LIST_ITEMS"),
    ]
    return tuple(cases)
