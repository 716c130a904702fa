"""Character cards into the database and back: what a card says becomes a character, its lorebook and
its avatar; an export gives back what was imported (unmapped fields included); a card that fails
leaves no row and no file."""

import io
import json
import struct

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import DatabaseError
from PIL import Image

from apps.characters.cards import parse_card
from apps.characters.models import Character, LorebookEntry
from apps.characters.pngtext import png_chunks
from apps.characters.services import character_export_card, character_import_card
from apps.core.errors import AppError
from tests.characters.card_corpus import IDAT, IEND, SIGNATURE, as_json, b64, chunk, text, v2, v3

pytestmark = pytest.mark.django_db

CHARACTER_FIELDS = [
    "name",
    "description",
    "description_in_prompt",
    "persona",
    "personality",
    "scenario",
    "greeting",
    "alternate_greetings",
    "example_dialogue",
    "post_history_instructions",
    "tags",
    "creator",
    "creator_notes",
    "character_version",
    "card_data",
]
ENTRY_FIELDS = [
    "comment",
    "name",
    "keys",
    "secondary_keys",
    "content",
    "enabled",
    "constant",
    "selective",
    "case_sensitive",
    "insertion_order",
    "priority",
    "position",
    "extensions",
    "card_data",
]

# A V3 card as SillyTavern writes one: fields we map, fields only V3 has, extensions, a lorebook.
RICH = v3(
    description="{{char}} is a cheerful astronomy guide.",
    personality="curious, warm",
    scenario="A rooftop observatory at night with {{user}}.",
    first_mes="*waves at {{user}}* Hi! I'm {{char}}. Look up!",
    mes_example="<START>\n{{user}}: What's that?\n{{char}}: [excited] Jupiter!",
    creator_notes="Best with a small model.",
    system_prompt="You are {{char}}.",
    post_history_instructions="Stay in character.",
    alternate_greetings=["Clear skies tonight!", "Ready to stargaze?"],
    tags=["space", " friendly ", ""],
    creator="staff",
    character_version="1.2",
    extensions={"talkativeness": "0.5", "depth_prompt": {"prompt": "Be brief.", "depth": 4}},
    character_book={
        "name": "Sky lore",
        "scan_depth": 4,
        "token_budget": 512,
        "extensions": {"book_ext": True},
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
                "id": 7,
                "comment": "Moon facts",
                "selective": True,
                "secondary_keys": ["night"],
                "constant": False,
                "position": "before_char",
                "use_regex": False,
                "display_index": 0,
            },
            {
                "keys": ["Sun"],
                "content": "",
                "extensions": {},
                "enabled": False,
                "insertion_order": 2,
                "case_sensitive": True,
                "use_regex": False,
            },
        ],
        "book_only_field": [1, 2],
    },
    nickname="Novie",
    group_only_greetings=["Hello, everyone!"],
    assets=[{"type": "icon", "uri": "ccdefault:", "name": "main", "ext": "png"}],
)


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


def picture(color="purple", size=(6, 4)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def card_in(image: bytes, *texts: tuple[str, dict]) -> bytes:
    """`image` (a PNG) with card text chunks added before its IEND."""
    assert image.endswith(chunk(b"IEND", b""))
    added = b"".join(text(keyword, b64(card)) for keyword, card in texts)
    return image[:-12] + added + image[-12:]


def fields(character: Character) -> dict:
    return {name: getattr(character, name) for name in CHARACTER_FIELDS}


def entries(character: Character) -> list[dict]:
    return [{name: getattr(e, name) for name in ENTRY_FIELDS} for e in character.lorebook_entries.all()]


def files_in(media) -> list[str]:
    return sorted(str(p.relative_to(media)) for p in media.rglob("*") if p.is_file())


def test_a_v2_json_card_becomes_an_unpublished_character_with_its_lorebook():
    card = v2(
        description="A guide.",
        personality="calm",
        scenario="A ship.",
        first_mes="Hello {{user}}, I am {{char}}.",
        mes_example="{{user}}: hi\n{{char}}: hello",
        system_prompt="You are {{char}}.",
        post_history_instructions="Be brief.",
        alternate_greetings=["Hey."],
        tags=["space", "calm"],
        creator="me",
        creator_notes="Notes.",
        character_version="3",
        extensions={"world": "Sky"},
        character_book={"entries": [{"keys": ["moon"], "content": "Far away.", "insertion_order": 3}]},
    )
    nova = character_import_card(data=as_json(card), filename_hint="nova.json")

    nova.refresh_from_db()
    assert (nova.name, nova.slug, nova.is_published, bool(nova.avatar)) == ("Nova", "nova", False, False)
    assert (nova.description, nova.personality, nova.scenario) == ("A guide.", "calm", "A ship.")
    assert nova.persona == "You are {{char}}." and nova.description_in_prompt
    assert nova.greeting == "Hello User, I am Nova."  # shown and spoken as it is: filled in
    assert nova.example_dialogue == "{{user}}: hi\n{{char}}: hello"  # the prompt fills it in
    assert nova.alternate_greetings == ["Hey."] and nova.tags == "space, calm"
    assert (nova.creator, nova.creator_notes, nova.character_version) == ("me", "Notes.", "3")
    assert nova.post_history_instructions == "Be brief."
    assert nova.card_data == {"extensions": {"world": "Sky"}, "first_mes": "Hello {{user}}, I am {{char}}."}
    [moon] = nova.lorebook_entries.all()
    assert (moon.keys, moon.content, moon.insertion_order, moon.enabled, moon.constant) == (
        ["moon"],
        "Far away.",
        3,
        True,
        False,
    )


def test_a_v2_png_card_brings_its_picture_as_the_avatar_without_the_card(media):
    image = picture("teal")
    nova = character_import_card(data=card_in(image, ("chara", v2(description="A guide."))))

    assert nova.description == "A guide." and nova.avatar.name == "avatars/nova.png"
    stored = (media / nova.avatar.name).read_bytes()
    kinds = [stored[c.start + 4 : c.start + 8] for c in png_chunks(stored)]
    assert b"tEXt" not in kinds  # the card is not served to everyone who sees the avatar
    assert Image.open(io.BytesIO(stored)).getpixel((0, 0)) == Image.open(io.BytesIO(image)).getpixel((0, 0))


def test_a_v3_png_with_both_chunks_is_read_from_ccv3():
    data = card_in(picture(), ("chara", v2(name="Old Nova", description="V2 copy.")), ("ccv3", RICH))
    nova = character_import_card(data=data)
    assert nova.name == "Nova" and nova.description == RICH["data"]["description"]
    assert nova.card_data["unknown"]["nickname"] == "Novie"
    assert nova.lorebook_entries.count() == 2


def test_names_that_collide_get_slugs_of_their_own():
    made = [character_import_card(data=as_json(v2())) for _ in range(3)]
    other = character_import_card(data=as_json(v2(name="Nova Prime")))
    unicode = character_import_card(data=as_json(v2(name="小明")))
    assert [c.slug for c in made] == ["nova", "nova-2", "nova-3"] and other.slug == "nova-prime"
    assert unicode.slug == "character" and unicode.name == "小明"
    assert Character.objects.filter(name="Nova").count() == 3


def test_publish_makes_it_published():
    assert character_import_card(data=as_json(v2()), publish=True).is_published


@pytest.mark.parametrize(("fmt", "spec"), [("json", "v2"), ("json", "v3"), ("png", "v2"), ("png", "v3")])
def test_export_then_import_gives_back_every_field_and_the_unknown_ones(fmt, spec, media):
    original = character_import_card(data=card_in(picture("orange"), ("ccv3", RICH)))
    exported = character_export_card(character=original, fmt=fmt, spec=spec)
    again = character_import_card(data=exported)

    assert fields(again) == fields(original)
    assert entries(again) == entries(original)
    assert again.slug == "nova-2"
    card = parse_card(exported)
    assert card.version == spec
    assert card.first_mes == RICH["data"]["first_mes"]  # as the card wrote it, not as shown
    assert card.unknown["assets"] == RICH["data"]["assets"] and card.unknown["nickname"] == "Novie"
    assert card.extensions == RICH["data"]["extensions"]
    book = card.character_book
    assert (book.name, book.scan_depth, book.token_budget, book.extensions) == ("Sky lore", 4, 512, {"book_ext": True})
    assert book.unknown == {"book_only_field": [1, 2]}
    moon = next(entry for entry in book.entries if entry.keys == ("moon", "lunar"))
    assert (moon.id, moon.unknown["display_index"], moon.extensions["probability"]) == (7, 0, 100)
    if fmt == "png":  # the avatar's picture carries the card
        picture_of = Image.open(io.BytesIO(exported)).convert("RGB").getpixel((0, 0))
        assert picture_of == (255, 165, 0)
        assert (media / again.avatar.name).read_bytes() == (media / original.avatar.name).read_bytes()
    else:
        assert json.loads(exported)["spec"] == f"chara_card_{spec}"


def test_a_card_exports_what_staff_changed(media):
    nova = character_import_card(data=as_json(RICH))
    nova.greeting = "Welcome aboard!"
    nova.tags = "space, night"
    nova.save()
    nova.lorebook_entries.filter(keys=["Sun"]).update(content="The sun is a star.", enabled=True)
    LorebookEntry.objects.create(character=nova, keys=["comet"], content="Comets have tails.", insertion_order=9)

    card = parse_card(character_export_card(character=nova, fmt="json", spec="v2"))
    assert card.first_mes == "Welcome aboard!" and card.tags == ("space", "night")
    assert [(e.keys, e.content, e.enabled) for e in card.character_book.entries] == [
        (("Sun",), "The sun is a star.", True),
        (("comet",), "Comets have tails.", True),
        (("moon", "lunar"), "The moon is 384,400 km away.", True),
    ]


def test_a_hand_made_character_exports_with_its_avatar_in_any_format(media, character):
    jpeg = io.BytesIO()
    Image.new("RGB", (5, 5), "red").save(jpeg, format="JPEG")
    character.avatar = SimpleUploadedFile("nova.jpg", jpeg.getvalue(), content_type="image/jpeg")
    character.tags = "a, b"
    character.save()

    exported = character_export_card(character=character, fmt="png", spec="v3")
    card = parse_card(exported)
    assert (card.name, card.system_prompt, card.first_mes, card.tags) == (
        "Nova",
        character.persona,
        "Hi! I'm Nova.",
        ("a", "b"),
    )
    assert card.character_book is None and card.unknown == {"group_only_greetings": []}
    r, g, b = Image.open(io.BytesIO(exported)).convert("RGB").getpixel((2, 2))
    assert r > 200 and g < 60 and b < 60

    character.avatar.storage.delete(character.avatar.name)  # the file went missing: a grey placeholder
    assert parse_card(character_export_card(character=character, fmt="png", spec="v2")).name == "Nova"


# --- a card that fails leaves nothing -------------------------------------------------------------


def nothing_left(media) -> bool:
    return not Character.objects.exists() and not LorebookEntry.objects.exists() and files_in(media) == []


# A picture Pillow cannot read (its IHDR says colour type 5, which PNG does not have) in a card
# that is otherwise fine: the codec never decodes pixels, the avatar check does.
BAD_PICTURE = SIGNATURE + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 5, 0, 0, 0)) + IDAT + IEND


@pytest.mark.parametrize(
    ("data", "code", "says"),
    [
        (b"not a card", "invalid_card", "neither a PNG image nor a JSON object"),
        (as_json({"spec": "chara_card_v9", "data": {"name": "N"}}), "unsupported_card", "chara_card_v9"),
        (
            as_json(v2(character_book={"entries": [{"keys": ["a"], "content": "b", "insertion_order": 2**40}]})),
            "invalid_card",
            "`character_book.entries[0].insertion_order`",
        ),
        (as_json(v2(tags=["t" * 600, "u" * 600])), "invalid_card", "`tags`"),
        (
            as_json(v2(character_book={"entries": [{"keys": [], "content": "x", "position": "p" * 40}]})),
            "invalid_card",
            "`character_book.entries[0].position`",
        ),
        (card_in(BAD_PICTURE, ("chara", v2())), "invalid_card", "picture is damaged"),
        (card_in(picture(size=(5000, 2)), ("chara", v2())), "card_too_large", "5000×2"),
    ],
    ids=["not a card", "spec v9", "number out of range", "tags too long", "position too long", "bad picture", "huge"],
)
def test_a_card_the_database_cannot_hold_is_refused_whole(data, code, says, media):
    with pytest.raises(AppError) as raised:
        character_import_card(data=data, filename_hint="bad.png")
    assert raised.value.code == code and says in raised.value.message, raised.value.message
    assert raised.value.message.startswith("bad.png: ")
    assert nothing_left(media)


def test_a_failure_while_saving_leaves_no_row_and_no_picture(media, monkeypatch):
    def broken_save(self, *args, **kwargs):
        if kwargs.get("update_fields") == ["avatar"]:
            raise DatabaseError("disk full")
        return original_save(self, *args, **kwargs)

    original_save = Character.save
    monkeypatch.setattr(Character, "save", broken_save)
    with pytest.raises(DatabaseError):
        character_import_card(data=card_in(picture(), ("ccv3", RICH)))
    assert nothing_left(media)


def test_the_same_card_twice_at_once_gets_a_second_slug(monkeypatch):
    """Another import takes the slug between the look-up and the save: the next free one is used."""
    real_save = Character.save

    def save_after_another(self, *args, **kwargs):
        if self.pk is None and self.slug == "nova":  # the other import's row lands first
            Character.objects.bulk_create([Character(name="Nova", slug="nova", persona="x")])
        return real_save(self, *args, **kwargs)

    monkeypatch.setattr(Character, "save", save_after_another)
    assert character_import_card(data=as_json(v2())).slug == "nova-2"


def test_an_imported_greeting_is_rendered_ahead_once_committed(monkeypatch, django_capture_on_commit_callbacks):
    from apps.characters import services

    queued = []
    monkeypatch.setattr(services, "enqueue", lambda name, **kwargs: queued.append((name, kwargs)))
    with django_capture_on_commit_callbacks(execute=True):
        nova = character_import_card(data=as_json(v2(first_mes="Hi!")))
        character_import_card(data=as_json(v2(name="Mute")))  # no greeting: nothing to render
        assert queued == []  # not before the commit
    assert queued == [("workers.tts.tasks.greeting_render", {"character_id": nova.pk})]


def test_export_takes_json_or_png_v2_or_v3(character):
    with pytest.raises(AppError) as raised:
        character_export_card(character=character, fmt="xml", spec="v2")
    assert raised.value.code == "invalid_field"
