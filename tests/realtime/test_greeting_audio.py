"""The greeting, rendered ahead of time by the batch worker (real Piper), re-rendered when the greeting or
the voice changes, and spoken at once when a call starts on a new session."""

import base64
import io
import time
import wave

import numpy as np
import pytest
from asgiref.sync import sync_to_async
from django.urls import reverse

from apps.characters.models import Character, Voice
from apps.characters.selectors import greeting_audio_key
from tests.realtime.client import connected_socket, types, until_turn_end

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("memory_worker")]


def rendered(character_id, *, after_key: str | None = None, timeout: float = 60) -> Character:
    """The character once the batch worker has stored audio for its current greeting and voice."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        c = Character.objects.select_related("voice").get(pk=character_id)
        if c.greeting_audio and c.greeting_audio_key == greeting_audio_key(character=c) != after_key:
            return c
        time.sleep(0.1)
    raise AssertionError(f"greeting of character {character_id} never rendered")


def wav_of(character) -> tuple[np.ndarray, int]:
    with character.greeting_audio.open("rb") as f, wave.open(io.BytesIO(f.read())) as w:
        return np.frombuffer(w.readframes(w.getnframes()), np.int16), w.getframerate()


def change_form(character, **changes) -> dict:
    fields = {
        "name": character.name,
        "slug": character.slug,
        "persona": character.persona,
        "greeting": character.greeting,
        "language": character.language,
        "voice": character.voice_id or "",
        "is_published": "on" if character.is_published else "",
        "lorebook_entries-TOTAL_FORMS": "0",  # the lorebook inline, left empty
        "lorebook_entries-INITIAL_FORMS": "0",
    }
    return {**fields, **changes}


def test_admin_save_renders_the_greeting_and_a_change_renders_it_again(admin_client, character):
    url = reverse("admin:characters_character_change", args=[character.pk])
    response = admin_client.post(
        url, change_form(character, greeting="Hello there, I am Nova, your guide to the stars.")
    )
    assert response.status_code == 302
    first = rendered(character.pk)
    audio, rate = wav_of(first)
    assert rate >= 16000 and 1.5 < len(audio) / rate < 8  # a spoken sentence, not silence or noise
    assert np.abs(audio).max() > 3000
    first_file = first.greeting_audio.name
    assert first_file.startswith("greetings/")
    assert "Greeting audio" in admin_client.get(url).content.decode()  # playable on the change form

    admin_client.post(url, change_form(first, greeting="Hi."))  # a new greeting: rendered again, shorter
    second = rendered(character.pk, after_key=first.greeting_audio_key)
    audio2, rate2 = wav_of(second)
    assert len(audio2) / rate2 < len(audio) / rate - 1
    assert not first.greeting_audio.storage.exists(first_file)  # the stale file is gone

    admin_client.post(url, change_form(second, name="Nova II"))  # nothing spoken changed: kept as is
    time.sleep(1)
    assert Character.objects.get(pk=character.pk).greeting_audio.name == second.greeting_audio.name


def test_a_voice_change_renders_its_characters_greetings_again(admin_client, character):
    voice = Voice.objects.create(name="joe-slow", engine="piper", model="", speed=1.0)
    character.greeting = "I will say this sentence at two different speeds."
    character.voice = voice
    character.save()
    from apps.characters.services import greeting_audio_refresh

    greeting_audio_refresh(character=character)
    normal = rendered(character.pk)
    slow_s = len(wav_of(normal)[0]) / wav_of(normal)[1]
    response = admin_client.post(
        reverse("admin:characters_voice_change", args=[voice.pk]),
        {"name": voice.name, "engine": "piper", "model": "", "speaker": "", "language": "en", "speed": "0.6"},
    )
    assert response.status_code == 302
    slower = rendered(character.pk, after_key=normal.greeting_audio_key)
    audio, rate = wav_of(slower)
    assert len(audio) / rate > slow_s * 1.3  # spoken at the new speed


@pytest.mark.asyncio
@pytest.mark.usefixtures("llm_worker")
async def test_a_call_on_a_new_session_hears_the_greeting_at_once(api_key, character):
    from apps.characters.services import greeting_audio_refresh

    await sync_to_async(greeting_audio_refresh)(character=character)
    ready = await sync_to_async(rendered)(character.pk)
    audio, rate = await sync_to_async(wav_of)(ready)

    comm = await connected_socket(api_key, output_sample_rate=24000)
    await comm.send_json_to({"type": "voice_call_start"})
    frames = [await comm.receive_json_from(timeout=5)]
    while frames[-1]["type"] != "audio_end":
        frames.append(await comm.receive_json_from(timeout=5))
    kinds = types(frames)
    assert kinds[:2] == ["voice_call_listening", "tts_start"] and set(kinds[2:-1]) == {"audio_chunk"}
    assert frames[1]["text"] == "Hi! I'm Nova."
    pcm = b"".join(base64.b64decode(f["audio_base64"]) for f in frames[2:-1])
    assert {f["audio_sample_rate"] for f in frames[2:-1]} == {24000}
    assert abs(len(pcm) / 2 / 24000 - len(audio) / rate) < 0.05  # all of it, at the rate asked for
    assert await comm.receive_nothing(timeout=0.3)
    await comm.send_json_to({"type": "voice_call_stop"})

    await comm.send_json_to({"type": "message", "content": "hello"})  # the session is no longer new
    await until_turn_end(comm)
    await comm.send_json_to({"type": "voice_call_start"})
    assert (await comm.receive_json_from(timeout=5))["type"] == "voice_call_listening"
    assert await comm.receive_nothing(timeout=0.5)  # no greeting in the middle of a conversation
