"""/api/v1/tts and speech-to-text jobs (/api/v1/asr/jobs) through the real worker on the REST speech
queues (Whisper tiny.en and Piper, as tests/api/test_speech.py runs them)."""

import importlib.util
import time
from pathlib import Path

import pytest
import redis
from django.conf import settings as django_settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from apps.conversations.models import AsrJob
from tests.speech import words
from workers.audio import decode_to_pcm, encode

pytestmark = pytest.mark.django_db(transaction=True)

SAMPLES = Path(list(importlib.util.find_spec("pytest_audioeval").submodule_search_locations)[0]) / "samples/audio/en"


def _until_finished(client, location: str, auth: dict, timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(location, **auth).json()
        if job["status"] in ("done", "failed"):
            return job
        assert job["status"] in ("queued", "running")
        time.sleep(0.2)
    raise AssertionError(f"the job did not finish in {timeout} s: {job}")


@pytest.mark.usefixtures("speech_api_worker")
def test_a_speech_to_text_job_from_upload_to_text(client, alice, bob):
    wav = (SAMPLES / "counting.wav").read_bytes()
    created = client.post("/api/v1/asr/jobs", {"audio": SimpleUploadedFile("counting.wav", wav)}, **alice.auth)
    assert created.status_code == 202, created.content
    job = created.json()
    assert created["Location"] == f"/api/v1/asr/jobs/{job['id']}"
    assert job["status"] in ("queued", "running") and job["text"] == "" and job["error"] is None

    done = _until_finished(client, created["Location"], alice.auth)
    assert done["status"] == "done", done
    spoken = words("one two three four five six seven eight nine ten")
    assert words(done["text"]) in (spoken, [str(n) for n in range(1, 11)]), done["text"]  # Whisper may write digits
    assert done["language"] == "en" and done["error"] is None
    assert done["duration_s"] == pytest.approx(len(decode_to_pcm(wav)) / 32000, abs=0.1)
    assert done["finished_at"] >= done["created_at"]

    theirs = client.get(created["Location"], **bob.auth)  # someone else's job: as if there were none
    assert (theirs.status_code, theirs.json()["error"]["code"]) == (404, "job_not_found")
    assert "seven" not in theirs.content.decode()

    pcm = decode_to_pcm((SAMPLES / "hello_world.wav").read_bytes())  # the raw body, in another container
    raw = client.post("/api/v1/asr/jobs", encode(pcm, 16000, "ogg"), content_type="audio/ogg", **bob.auth)
    assert raw.status_code == 202
    assert {"hello", "world"} <= set(words(_until_finished(client, raw["Location"], bob.auth)["text"]))


def test_a_job_that_fails_says_why(client, alice):
    from workers.asr.tasks import asr_job

    job = AsrJob.objects.create(user=alice.user)
    asr_job(job_id=str(job.pk), utterance_id="expired")  # the upload left the cache before a worker took it
    failed = client.get(f"/api/v1/asr/jobs/{job.pk}", **alice.auth).json()
    assert failed["status"] == "failed" and failed["text"] == ""
    assert failed["error"] == {"code": "audio_expired", "message": "The upload expired before it was transcribed."}
    asr_job(job_id=str(job.pk), utterance_id="expired")  # delivered twice: a no-op
    assert AsrJob.objects.get(pk=job.pk).finished_at.isoformat().startswith(failed["finished_at"][:19])


def test_uploads_are_checked_before_any_job(client, alice, settings):
    settings.ASR_MAX_UPLOAD_BYTES = 1000
    broker = redis.Redis.from_url(django_settings.CELERY_BROKER_URL)
    broker.delete("asr_api")
    too_large = client.post("/api/v1/asr/jobs", bytes(200_000), content_type="audio/wav", **alice.auth)
    assert (too_large.status_code, too_large.json()["error"]["code"]) == (413, "audio_too_large")
    in_slack = client.post(
        "/api/v1/asr/jobs", {"audio": SimpleUploadedFile("a.wav", bytes(5000))}, **alice.auth
    )  # the counting handler
    assert (in_slack.status_code, in_slack.json()["error"]["code"]) == (413, "audio_too_large")
    corrupt = client.post("/api/v1/asr/jobs", b"OggS" + bytes(300), content_type="audio/ogg", **alice.auth)
    assert (corrupt.status_code, corrupt.json()["error"]["code"]) == (400, "corrupt_audio")
    empty = client.post("/api/v1/asr/jobs", b"", content_type="audio/wav", **alice.auth)
    assert (empty.status_code, empty.json()["error"]["code"]) == (400, "empty_audio")

    browser = Client(enforce_csrf_checks=True)  # the session's CSRF check reads a multipart body: capped too
    browser.force_login(alice.user)
    browser.get("/account/")
    csrf = browser.cookies["csrftoken"].value
    capped = browser.post(
        "/api/v1/asr/jobs", {"audio": SimpleUploadedFile("a.wav", bytes(5000))}, HTTP_X_CSRFTOKEN=csrf
    )
    assert (capped.status_code, capped.json()["error"]["code"]) == (413, "audio_too_large")
    assert AsrJob.objects.count() == 0 and broker.llen("asr_api") == 0


def test_speech_requests_count_against_the_quota(client, alice, settings):
    settings.QUOTA_SPEECH_REQUESTS, settings.QUOTA_WINDOW_S = 1, 30.0
    assert client.post("/api/v1/tts", {}, content_type="application/json", **alice.auth).status_code == 400
    for refused in (
        client.post("/api/v1/tts", {"text": "hi"}, content_type="application/json", **alice.auth),
        client.post(
            "/api/v1/asr/jobs", (SAMPLES / "counting.wav").read_bytes(), content_type="audio/wav", **alice.auth
        ),
    ):
        assert (refused.status_code, refused.json()["error"]["code"]) == (429, "rate_limited")
        assert 0 < refused.json()["error"]["retry_after"] <= 30 and 1 <= int(refused["Retry-After"]) <= 30
    assert AsrJob.objects.count() == 0


@pytest.mark.usefixtures("speech_api_worker")
def test_text_to_speech(client, alice):
    spoken = client.post(
        "/api/v1/tts", {"text": "Hello there.", "format": "ogg"}, content_type="application/json", **alice.auth
    )
    assert spoken.status_code == 200 and spoken["Content-Type"] == "audio/ogg"
    assert 0.5 < len(decode_to_pcm(spoken.content)) / 32000 < 4


@pytest.mark.parametrize(
    "body, content_type, status, code",
    [
        (b'{"text": "hi", "format": "flac"}', "application/json", 400, "unsupported_format"),
        (b'{"text": "hi", "voice": "nobody"}', "application/json", 404, "unknown_voice"),
        (b'{"text": "' + b"x" * 2001 + b'"}', "application/json", 400, "text_too_long"),
        (b'{"text": "hi", "sample_rate": 4000}', "application/json", 400, "invalid_field"),
        (b'{"text": "a\\u0000b"}', "application/json", 400, "invalid_field"),
        (b'{"text": 1e999}', "application/json", 400, "invalid_json"),
        (b"text=hi", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
    ],
)
def test_text_to_speech_errors(client, alice, body, content_type, status, code):
    response = client.post("/api/v1/tts", body, content_type=content_type, **alice.auth)
    assert (response.status_code, response.json()["error"]["code"]) == (status, code)
