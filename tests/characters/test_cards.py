"""The Character Card codec: V1/V2/V3 cards in and out of PNG and JSON, and hostile files refused.

Pure: no database. Hostile files must raise AppError with their documented code (never another
exception); the bombs must be refused by their size, measured here as the memory parsing used.
"""

import base64
import io
import json
import random
import struct
import tracemalloc
import zlib

import pytest
from PIL import Image

from apps.characters import cards as c
from apps.characters.cards import BookEntry, Card, CharacterBook, card_to_json, card_to_png, parse_card
from apps.characters.pngtext import png_chunks
from apps.core.errors import AppError
from apps.realtime.protocol import ErrorCode
from tests.characters.card_corpus import (
    IDAT,
    IEND,
    SIGNATURE,
    MiB,
    as_json,
    b64,
    book,
    card_png,
    chunk,
    deflated,
    entry,
    hostile,
    png,
    text,
    v2,
    v3,
)

# A V3 card as SillyTavern exports it: V1 fields mirrored at the top, V3 fields we do not map, a
# lorebook whose entries carry fields of their own.
ST_V3 = {
    "name": "Nova",
    "description": "Mirror for V1 readers.",
    "avatar": "none",
    "spec": "chara_card_v3",
    "spec_version": "3.0",
    "data": {
        "name": "Nova",
        "description": "A cheerful astronomy guide.",
        "personality": "curious, warm",
        "scenario": "A rooftop observatory at night.",
        "first_mes": "Hi! I'm Nova. Look up!",
        "mes_example": "<START>\n{{user}}: What's that?\n{{char}}: Jupiter!",
        "creator_notes": "Best with a small model.",
        "system_prompt": "You are {{char}}.",
        "post_history_instructions": "Stay in character.",
        "alternate_greetings": ["Clear skies tonight!", "Ready to stargaze?"],
        "tags": ["space", "friendly"],
        "creator": "staff",
        "character_version": "1.2",
        "extensions": {"talkativeness": "0.5", "fav": False, "depth_prompt": {"prompt": "Be brief.", "depth": 4}},
        "character_book": {
            "name": "Sky lore",
            "scan_depth": 4,
            "token_budget": 512,
            "recursive_scanning": False,
            "extensions": {},
            "entries": [
                {
                    "keys": ["moon", "lunar"],
                    "content": "The moon is 384,400 km away.",
                    "extensions": {"position": 0, "probability": 100},
                    "enabled": True,
                    "insertion_order": 100,
                    "case_sensitive": False,
                    "name": "Moon",
                    "priority": 10,
                    "id": 0,
                    "comment": "Moon facts",
                    "selective": True,
                    "secondary_keys": ["night"],
                    "constant": False,
                    "position": "before_char",
                    "use_regex": False,
                    "display_index": 0,
                }
            ],
        },
        "nickname": "Novie",
        "creator_notes_multilingual": {"fr": "Mieux avec un petit modèle."},
        "source": ["https://example.org/nova"],
        "group_only_greetings": ["Hello, everyone!"],
        "creation_date": 1700000000,
        "modification_date": 1700000500,
        "assets": [{"type": "icon", "uri": "ccdefault:", "name": "main", "ext": "png"}],
    },
}

FULL = Card(
    name="Nova",
    description="A guide.",
    personality="curious",
    scenario="A rooftop.",
    first_mes="Hi!",
    alternate_greetings=("Hello again.",),
    mes_example="{{char}}: Look!",
    system_prompt="You are Nova.",
    post_history_instructions="Be brief.",
    tags=("space",),
    creator="staff",
    creator_notes="Notes.",
    character_version="2",
    character_book=CharacterBook(
        entries=(
            BookEntry(keys=("moon",), content="Far.", insertion_order=5, id="m", secondary_keys=("sky",)),
            BookEntry(keys=("sun",), content="Hot.", enabled=False, position="after_char", unknown={"probability": 50}),
        ),
        name="Lore",
        scan_depth=3,
        extensions={"x": 1},
        unknown={"book_extra": [1, 2]},
    ),
    extensions={"world": "Sky", "nested": {"a": [1, {"b": None}]}},
    unknown={"nickname": "Novie", "nobody_knows": {"what": "this is"}},
)


def chunk_texts(data: bytes) -> list[tuple[str, bytes]]:
    """The (keyword, text) of each tEXt chunk, in file order."""
    found = []
    for ch in png_chunks(data):
        if ch.kind == b"tEXt":
            keyword, _, value = data[ch.data].partition(b"\0")
            found.append((keyword.decode("latin-1"), value))
    return found


def peak_bytes(fn) -> int:
    tracemalloc.start()
    try:
        fn()
    except AppError:
        pass
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


# --- round trips ---------------------------------------------------------------------------------


def test_v2_json_round_trip_keeps_every_field():
    assert parse_card(card_to_json(FULL, version="v2")) == FULL
    assert json.loads(card_to_json(FULL))["spec"] == "chara_card_v2"


def test_v2_png_round_trip_keeps_every_field():
    data = card_to_png(FULL, version="v2")
    assert parse_card(data) == FULL
    assert [keyword for keyword, _ in chunk_texts(data)] == ["chara"]


@pytest.mark.parametrize("form", ["json", "png"])
def test_v3_round_trip_is_stable_and_adds_what_v3_requires(form):
    write = card_to_png if form == "png" else card_to_json
    first = parse_card(write(FULL, version="v3"))
    assert first.version == "v3"
    assert first.unknown == {**FULL.unknown, "group_only_greetings": []}
    assert [e.unknown.get("use_regex") for e in first.character_book.entries] == [False, False]
    again = parse_card(write(first, version="v3"))
    assert again == first
    assert write(again, version="v3") == write(first, version="v3")


def test_a_sillytavern_v3_card_comes_back_with_nothing_lost():
    card = parse_card(as_json(ST_V3))
    assert (card.version, card.name, card.personality) == ("v3", "Nova", "curious, warm")
    assert card.alternate_greetings == ("Clear skies tonight!", "Ready to stargaze?")
    assert card.tags == ("space", "friendly")
    assert card.extensions["depth_prompt"] == {"prompt": "Be brief.", "depth": 4}
    moon = card.character_book.entries[0]
    assert (moon.keys, moon.secondary_keys, moon.priority, moon.position) == (
        ("moon", "lunar"),
        ("night",),
        10,
        "before_char",
    )
    assert moon.unknown == {"use_regex": False, "display_index": 0}
    assert set(card.unknown) == {
        "nickname",
        "creator_notes_multilingual",
        "source",
        "group_only_greetings",
        "creation_date",
        "modification_date",
        "assets",
    }
    for form in (card_to_json(card, version="v3"), card_to_png(card, version="v3")):
        exported = (
            json.loads(form) if form[:1] == b"{" else json.loads(base64.b64decode(dict(chunk_texts(form))["ccv3"]))
        )
        assert exported["data"] == ST_V3["data"]


def test_a_v3_png_carries_a_v2_copy_in_chara_for_older_readers():
    data = card_to_png(FULL, version="v3")
    texts = chunk_texts(data)
    assert [keyword for keyword, _ in texts] == ["chara", "ccv3"]
    chara, ccv3 = (json.loads(base64.b64decode(value)) for _, value in texts)
    assert (chara["spec"], chara["spec_version"]) == ("chara_card_v2", "2.0")
    assert (ccv3["spec"], ccv3["spec_version"]) == ("chara_card_v3", "3.0")
    assert chara["data"]["character_book"]["entries"][1]["probability"] == 50  # unknown entry fields too
    assert chara["data"]["nobody_knows"] == {"what": "this is"}


def test_ccv3_wins_over_chara_in_either_order():
    old, new = b64(v2(name="Old")), b64(v3(name="New"))
    for chunks in ([text("chara", old), text("ccv3", new)], [text("ccv3", new), text("chara", old)]):
        card = parse_card(png(*chunks))
        assert (card.name, card.version) == ("New", "v3")
    assert parse_card(png(text("chara", old))).name == "Old"
    assert parse_card(png(text("CHARA", old))).name == "Old"  # keywords match in any case, as SillyTavern's


def test_v1_flat_cards_are_read_and_keep_their_extra_fields():
    flat = {
        "name": "Nova",
        "description": "A guide.",
        "personality": "curious",
        "scenario": "A rooftop.",
        "first_mes": "Hi!",
        "mes_example": "{{char}}: Look!",
        "avatar": "none",
        "talkativeness": "0.5",
    }
    for data in (as_json(flat), card_png(flat)):
        card = parse_card(data)
        assert (card.version, card.name, card.first_mes, card.mes_example) == ("v1", "Nova", "Hi!", "{{char}}: Look!")
        assert card.unknown == {"avatar": "none", "talkativeness": "0.5"}
    assert json.loads(card_to_json(card))["data"]["scenario"] == "A rooftop."


def test_compressed_text_chunks_are_read():
    raw = json.dumps(v2(description="zipped")).encode()
    z = chunk(b"zTXt", b"chara\0\0" + zlib.compress(base64.b64encode(raw)))
    i = chunk(b"iTXt", b"ccv3\0\1\0en\0\0" + zlib.compress(base64.b64encode(raw)))
    assert parse_card(png(z)).description == "zipped"
    assert parse_card(png(i)).description == "zipped"


def test_nulls_and_missing_optional_fields_take_the_defaults():
    card = parse_card(as_json(v2(description=None, tags=None, extensions=None, character_book=book(entry(name=None)))))
    assert (card.description, card.tags, card.extensions) == ("", (), {})
    assert card.character_book.entries[0].name is None
    minimal = parse_card(as_json({"spec": "chara_card_v2", "data": {"name": "N"}}))
    assert minimal == Card(name="N")


def test_the_limits_themselves_are_accepted():
    edge = v2(
        name="n" * c.CARD_MAX_NAME_CHARS,
        description="d" * c.CARD_MAX_TEXT_CHARS,
        tags=["t"] * c.CARD_MAX_LIST_ITEMS,
        character_book=book(*[entry(keys=["k"] * c.CARD_MAX_LIST_ITEMS)] * c.CARD_MAX_BOOK_ENTRIES),
    )
    card = parse_card(as_json(edge))
    assert len(card.character_book.entries) == c.CARD_MAX_BOOK_ENTRIES
    deep = json.loads("[" * (c.CARD_MAX_DEPTH - 3) + "]" * (c.CARD_MAX_DEPTH - 3))  # 3 levels: card, data, extensions
    assert parse_card(as_json(v2(extensions={"x": deep}))).extensions["x"] == deep
    with pytest.raises(AppError, match="deeper than 32"):
        parse_card(as_json(v2(extensions={"x": [deep]})))


# --- writing into a picture ----------------------------------------------------------------------


def test_export_into_a_picture_keeps_its_pixels_and_drops_its_old_card():
    picture = io.BytesIO()
    Image.new("RGB", (8, 6), (30, 60, 90)).save(picture, "PNG")
    old_card = picture.getvalue()[:-12] + text("Software", b"paint") + text("chara", b64(v2(name="Old")))
    old_card += text("ccv3", b64(v3(name="Old"))) + IEND
    data = card_to_png(FULL, image=old_card, version="v2")
    assert [keyword for keyword, _ in chunk_texts(data)] == ["Software", "chara"]
    assert parse_card(data) == FULL
    before = [old_card[ch.start : ch.end] for ch in png_chunks(old_card) if ch.kind in (b"IHDR", b"IDAT")]
    after = [data[ch.start : ch.end] for ch in png_chunks(data) if ch.kind in (b"IHDR", b"IDAT")]
    assert after == before
    with Image.open(io.BytesIO(data)) as image:  # our own output: an independent reader agrees
        assert image.size == (8, 6) and image.getpixel((7, 5)) == (30, 60, 90)
        assert base64.b64decode(image.text["chara"]) == card_to_json(FULL, version="v2")


def test_export_without_a_picture_makes_a_valid_png():
    data = card_to_png(Card(name="Nova"), version="v3")
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        assert image.size == (1, 1)
        assert json.loads(base64.b64decode(image.text["ccv3"]))["data"]["name"] == "Nova"


def test_export_refuses_what_it_could_not_read_back():
    with pytest.raises(AppError) as caught:
        card_to_png(FULL, image=b"\xff\xd8\xff\xe0 a JPEG")
    assert caught.value.code == ErrorCode.UNSUPPORTED_CARD
    with pytest.raises(AppError) as caught:
        card_to_png(FULL, image=card_png(v2())[:40])
    assert caught.value.code == ErrorCode.INVALID_CARD
    huge = CharacterBook(entries=(BookEntry(keys=("k",), content="x" * 5000),) * c.CARD_MAX_BOOK_ENTRIES)
    with pytest.raises(AppError, match="CARD_MAX_JSON_BYTES") as caught:
        card_to_json(Card(name="Big", character_book=huge))
    assert caught.value.code == ErrorCode.CARD_TOO_LARGE


def test_the_bytes_choose_the_parser_not_the_filename():
    assert parse_card(as_json(v2()), filename="nova.png").name == "Nova"
    assert parse_card(card_png(v2()), filename="nova.json").name == "Nova"
    with pytest.raises(AppError, match=r"^nova\.png: The file is empty\.$"):
        parse_card(b"", filename="nova.png")


# --- hostile files -------------------------------------------------------------------------------


@pytest.mark.parametrize("case", hostile(), ids=lambda case: case.name)
def test_each_hostile_file_gets_its_code_and_a_message_saying_what_is_wrong(case):
    with pytest.raises(AppError) as caught:
        parse_card(case.data)
    assert (caught.value.code, case.code) == (case.code, case.code), caught.value.message
    assert case.code in ErrorCode.DESCRIPTIONS
    assert case.says in caught.value.message


def test_bombs_are_refused_by_their_size_not_inflated():
    """64 MiB behind ~64 KB of zlib, in a card chunk: inflating stops at the cap (5.6 MB; zlib grows its
    output buffer by copying, so up to twice that is held), a plain zlib.decompress would hold 64 MiB."""
    bombs = [case for case in hostile() if "bomb" in case.name]
    assert len(bombs) == 2
    for case in bombs:
        assert len(case.data) < MiB
        assert peak_bytes(lambda case=case: parse_card(case.data)) < 2 * c.CARD_MAX_BASE64 + MiB


def test_a_giant_image_is_stepped_over_not_decoded():
    """A 30000×30000 picture whose IDAT inflates to 64 MiB: the card is read and the pixels are never touched."""
    header = chunk(b"IHDR", struct.pack(">IIBBBBB", 30000, 30000, 8, 0, 0, 0, 0))
    data = SIGNATURE + header + chunk(b"IDAT", deflated(b"\0", 64 * MiB)) + text("chara", b64(v2())) + IEND
    assert parse_card(data).name == "Nova"
    assert peak_bytes(lambda: parse_card(data)) < MiB


@pytest.mark.parametrize("case", [case for case in hostile() if "declares" in case.name], ids=lambda case: case.name)
def test_a_chunk_length_that_lies_allocates_nothing(case):
    assert peak_bytes(lambda: parse_card(case.data)) < 64 * 1024


def test_mangled_cards_raise_only_app_errors():
    """Seeded random damage to good cards (flipped bytes, cuts, splices): a Card or an AppError, nothing else."""
    rng = random.Random(12)
    goods = [card_to_png(FULL, version="v3"), card_to_json(FULL, version="v3"), card_png(b"{}")]
    codes = set()
    for n in range(600):
        data = bytearray(goods[n % len(goods)])
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(data) or 1)
            action = rng.randrange(3)
            if action == 0:
                data[at] = rng.randrange(256)
            elif action == 1:
                del data[at:]
            else:
                data[at:at] = rng.randbytes(rng.randint(1, 8))
        try:
            parse_card(bytes(data))
        except AppError as exc:
            codes.add(exc.code)
    assert codes <= {ErrorCode.INVALID_CARD, ErrorCode.CARD_TOO_LARGE, ErrorCode.UNSUPPORTED_CARD}
    assert ErrorCode.INVALID_CARD in codes


def test_pngs_in_the_corpus_are_pngs_where_they_claim_to_be():
    """The builders make real PNGs: a good one opens in Pillow (so the hostile ones differ only where meant)."""
    with Image.open(io.BytesIO(card_png(v2()))) as image:
        image.load()
        assert image.text["chara"] == b64(v2()).decode()
    assert IDAT in card_png(v2())
