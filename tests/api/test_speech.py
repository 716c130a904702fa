"""REST speech endpoints through the real tts/asr workers."""

import io
import wave

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.characters.models import Voice
from tests.speech import audioeval_clip, words
from workers.audio import decode_to_pcm, encode

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("speech_api_worker")]


@pytest.fixture
def auth(api_key):
    return {"HTTP_AUTHORIZATION": f"Bearer {api_key}"}


def test_voice_list(client):
    Voice.objects.create(name="joe", engine="piper", model="en_US-joe-medium")
    assert client.get("/api/voices").json() == {
        "voices": [{"name": "joe", "engine": "piper", "language": "en", "speed": 1.0}]
    }


def test_text_to_speech_wav_round_trips_through_speech_to_text(client, auth):
    response = client.post(
        "/api/tts", {"text": "The quick brown fox jumps over the lazy dog."}, content_type="application/json", **auth
    )
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "audio/wav"
    with wave.open(io.BytesIO(response.content)) as w:
        assert (w.getnchannels(), w.getframerate()) == (1, 22050)
        assert 1.5 < w.getnframes() / 22050 < 6
    upload = SimpleUploadedFile("fox.wav", response.content, content_type="audio/wav")
    heard = client.post("/api/asr", {"audio": upload}, **auth).json()
    assert set(words("quick brown fox jumps lazy dog")) <= set(words(heard["text"]))


@pytest.mark.parametrize("fmt, mime", [("mp3", "audio/mpeg"), ("ogg", "audio/ogg")])
def test_compressed_formats_voice_and_speed(client, auth, fmt, mime):
    Voice.objects.create(name="joe", engine="piper", model="en_US-joe-medium")
    normal = client.post(
        "/api/tts",
        {"text": "Hello there, how are you?", "format": fmt, "voice": "joe"},
        content_type="application/json",
        **auth,
    )
    fast = client.post(
        "/api/tts",
        {"text": "Hello there, how are you?", "format": fmt, "voice": "joe", "speed": 2},
        content_type="application/json",
        **auth,
    )
    assert normal["Content-Type"] == mime
    assert len(decode_to_pcm(fast.content)) < 0.8 * len(decode_to_pcm(normal.content))


def test_speech_to_text_takes_a_raw_body_in_any_container(client, auth):
    pcm, transcript = audioeval_clip("counting")
    response = client.post("/api/asr", encode(pcm, 16000, "ogg"), content_type="audio/ogg", **auth)
    assert response.status_code == 200
    assert response.json()["duration_s"] == pytest.approx(len(pcm) / 32000, abs=0.1)
    assert len(words(response.json()["text"])) >= 5


@pytest.mark.parametrize(
    "body, status, code",
    [
        ({}, 400, "missing_field"),
        ({"text": "hi", "format": "flac"}, 400, "unsupported_format"),
        ({"text": "hi", "voice": "nobody"}, 404, "unknown_voice"),
        ({"text": "hi", "speed": 9}, 400, "invalid_field"),
        ({"text": "hi", "emotion": "smug"}, 400, "invalid_field"),
        ({"text": "x" * 2001}, 400, "text_too_long"),
    ],
)
def test_text_to_speech_errors(client, auth, body, status, code):
    response = client.post("/api/tts", body, content_type="application/json", **auth)
    assert (response.status_code, response.json()["error"]["code"]) == (status, code)


def test_speech_endpoints_need_a_token(client):
    assert client.post("/api/tts", {"text": "hi"}, content_type="application/json").status_code == 401
    assert client.post("/api/asr", b"x", content_type="audio/wav").json()["error"]["code"] == "auth_failed"


def test_bad_uploads(client, auth):
    assert client.post("/api/asr", b"", content_type="audio/wav", **auth).json()["error"]["code"] == "empty_audio"
    response = client.post("/api/asr", b"OggS" + bytes(300), content_type="audio/ogg", **auth)
    assert (response.status_code, response.json()["error"]["code"]) == (400, "corrupt_audio")
    assert client.post("/api/tts", b"{oops", content_type="application/json", **auth).json()["error"]["code"] == (
        "invalid_json"
    )
