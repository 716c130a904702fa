"""REST speech requests per user: 429 with Retry-After past the quota, per user, reset after the window."""

import time

import pytest
import redis
from django.conf import settings as django_settings

from apps.accounts.services import token_create

pytestmark = pytest.mark.django_db(transaction=True)


def test_speech_requests_per_user_are_limited_then_reset(client, settings, api_key, django_user_model):
    settings.QUOTA_SPEECH_REQUESTS, settings.QUOTA_WINDOW_S = 2, 3.0
    broker = redis.Redis.from_url(django_settings.CELERY_BROKER_URL)
    broker.delete("tts_api", "asr_api")
    auth = {"HTTP_AUTHORIZATION": f"Bearer {api_key}"}
    # every request counts, the ones the server turns down for their content too
    assert client.post("/api/tts", {}, content_type="application/json", **auth).status_code == 400
    assert client.post("/api/asr", b"", content_type="audio/wav", **auth).status_code == 400

    refused = client.post("/api/tts", {"text": "Hello there."}, content_type="application/json", **auth)
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["code"] == "rate_limited" and error["message"]
    assert 0 < error["retry_after"] <= 3.0
    assert int(refused["Retry-After"]) >= error["retry_after"] and int(refused["Retry-After"]) <= 3
    assert client.post("/api/asr", b"RIFF....", content_type="audio/wav", **auth).status_code == 429  # one quota
    assert broker.llen("tts_api") == 0 and broker.llen("asr_api") == 0  # refused before any job was queued

    bob = django_user_model.objects.create_user(username="bob")
    bob_auth = {"HTTP_AUTHORIZATION": f"Bearer {token_create(user=bob, name='t').key}"}
    assert client.post("/api/tts", {}, content_type="application/json", **bob_auth).status_code == 400  # not 429

    time.sleep(error["retry_after"] + 0.1)
    assert client.post("/api/tts", {}, content_type="application/json", **auth).status_code == 400  # a new window


def test_zero_turns_the_quota_off(client, settings, api_key):
    settings.QUOTA_SPEECH_REQUESTS = 0
    auth = {"HTTP_AUTHORIZATION": f"Bearer {api_key}"}
    codes = {client.post("/api/tts", {}, content_type="application/json", **auth).status_code for _ in range(40)}
    assert codes == {400}
