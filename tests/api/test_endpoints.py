"""/health, /ready and /characters."""

import pytest
from django.test import override_settings

pytestmark = pytest.mark.django_db(transaction=True)


def test_health(client):
    assert client.get("/health").json() == {"status": "ok"}


def test_characters_lists_only_published(client, character, draft_character):
    body = client.get("/characters").json()
    assert [c["name"] for c in body["characters"]] == ["nova"]
    nova = body["characters"][0]
    assert nova["display_name"] == "Nova"
    assert {"name", "display_name", "description", "voice_id"} <= set(nova)


def test_avatars_are_served_in_every_mode_but_users_recordings_never(client, character, settings, tmp_path):
    from django.core.files.base import ContentFile

    settings.MEDIA_ROOT, settings.DEBUG = tmp_path, False  # the scaled mode (no DEBUG static serving)
    character.avatar.save("nova.png", ContentFile(b"\x89PNG not really"), save=True)
    url = client.get("/characters").json()["characters"][0]["avatar_url"]
    response = client.get(url)
    assert response.status_code == 200 and b"".join(response.streaming_content) == b"\x89PNG not really"
    (tmp_path / "utterances").mkdir()
    (tmp_path / "utterances" / "someone.wav").write_bytes(b"RIFF a user's voice")
    client.raise_request_exception = False  # as served: a path climbing out is a 400, not an error page
    for path in (
        "/media/utterances/someone.wav",
        "/media/avatars/../utterances/someone.wav",
        "/media/avatars/%2e%2e/utterances/someone.wav",
        "/media/avatars/missing.png",
    ):
        assert client.get(path).status_code in (400, 404), path


def test_ready_with_a_live_worker(client, llm_worker, voice_worker, speech_api_worker, memory_worker):
    response = client.get("/ready")
    assert response.status_code == 200, response.json()
    assert response.json()["checks"] == {"database": "ok", "channel_layer": "ok", "workers": "ok"}


def test_not_ready_when_a_queue_has_no_worker(client, llm_worker):
    with override_settings(READY_QUEUES=["llm", "nobody-serves-this"]):
        response = client.get("/ready")
    assert response.status_code == 503
    assert response.json()["checks"]["workers"] == "no live worker for queue(s): nobody-serves-this"


def test_not_ready_when_the_broker_is_down(client):
    with override_settings(TASKS_IN_PROCESS=False):
        from personatalk.celery import app

        old = app.conf.broker_url
        app.conf.broker_url = "redis://127.0.0.1:1/0"
        try:
            response = client.get("/ready")
        finally:
            app.conf.broker_url = old
    assert response.status_code == 503
    assert response.json()["checks"]["workers"].startswith("broker")
