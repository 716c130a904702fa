"""A flood of REST speech never delays a live voice turn: /api/tts renders wait on their own queue
(tts_api) while the turn's speech runs on the live tts queue's worker."""

import asyncio
import base64

import pytest
import redis
from asgiref.sync import ThreadSensitiveContext
from django.conf import settings

from tests.realtime.client import connected_socket, types
from tests.speech import audioeval_clip, words

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.asyncio,
    pytest.mark.usefixtures("llm_worker", "voice_worker"),
]

LONG_TEXT = "The quick brown fox jumps over the lazy dog. " * 44  # ~2 minutes of speech, just under TTS_MAX_CHARS


async def test_a_voice_turn_completes_while_twenty_rest_renders_are_queued(api_key, character, async_client):
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    broker.delete("tts_api")
    auth = {"Authorization": f"Bearer {api_key}"}

    async def render():
        async with ThreadSensitiveContext():  # as under Daphne: each request its own thread for sync parts
            return await async_client.post(
                "/api/tts", {"text": LONG_TEXT}, content_type="application/json", headers=auth
            )

    renders = [asyncio.create_task(render()) for _ in range(20)]
    try:
        for _ in range(100):  # every request has queued its job
            if broker.llen("tts_api") >= 17:  # a speech_api worker (if one runs) holds one or two
                break
            await asyncio.sleep(0.1)
        assert broker.llen("tts_api") >= 17
        assert broker.llen("tts") == 0  # none went to the live queue

        pcm, transcript = audioeval_clip("quick_brown_fox")
        comm = await connected_socket(api_key)
        await comm.send_json_to({"type": "audio_message", "audio_base64": base64.b64encode(pcm).decode()})
        frames = []
        while not frames or frames[-1]["type"] != "turn_end":
            frames.append(await comm.receive_json_from(timeout=60))
        assert frames[-1]["status"] == "complete", types(frames)
        heard = next(f["text"] for f in frames if f["type"] == "asr_end")
        assert {"quick", "brown", "fox"} <= set(words(heard)), heard
        assert sum(f["type"] == "audio_chunk" for f in frames) >= 2  # the reply was spoken
        assert broker.llen("tts_api") >= 12  # ...while the REST renders still waited for their own worker
        assert not any(task.done() for task in renders)
    finally:
        for task in renders:
            task.cancel()
        await asyncio.gather(*renders, return_exceptions=True)
        broker.delete("tts_api")
