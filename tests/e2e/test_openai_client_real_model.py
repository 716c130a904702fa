"""A character through the official `openai` client with the real default model (SmolLM2), streaming:
scaled stack (a live Daphne, a Celery LLM worker with the local engine)."""

import pytest
from django.conf import settings

from apps.characters.models import Character
from apps.conversations.models import Message
from tests import stack
from tests.conftest import LOG_DIR

pytestmark = [pytest.mark.model, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def real_stack(live_env):
    env = {
        **live_env,
        # a Redis database of its own: the scripted LLM worker of other tests serves queue `llm` on the test one
        "REDIS_URL": settings.REDIS_URL.rsplit("/", 1)[0] + "/13",
        "LLM_BACKEND": "transformers",
        "LLM_SEED": "7",
        "LLM_MAX_NEW_TOKENS": "40",
        "MEMORY_EXTRACTION": "false",
    }
    worker = stack.start_worker(queues="llm", env=env, log_dir=LOG_DIR, name="e2e-openai-llm", timeout=300)
    daphne, url = stack.start_daphne(env=env, log_dir=LOG_DIR)
    yield url
    daphne.stop()
    worker.stop()


def test_a_character_streams_through_the_openai_client_with_smollm2(real_stack, api_key):
    import openai

    Character.objects.create(
        name="Nova",
        slug="nova",
        is_published=True,
        greeting="Hi! I'm Nova. Ask me about the stars.",
        persona="You are Nova, a cheerful astronomy guide. You answer in one or two short sentences.",
    )
    client = openai.OpenAI(base_url=f"{real_stack}/v1", api_key=api_key, max_retries=0, timeout=120)
    assert [m.id for m in client.models.list().data] == ["nova"]
    chunks = list(
        client.chat.completions.create(
            model="nova",
            messages=[
                {"role": "system", "content": "Be friendly."},
                {"role": "user", "content": "What is the biggest planet?"},
            ],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(text.split()) >= 3 and finish in (["stop"], ["length"]), (text, finish)
    assert not text.lstrip().startswith("[")  # the emotion tag never reaches the client
    last = next(c for c in chunks if c.choices and c.choices[0].finish_reason)
    saved = Message.objects.get(pk=last.model_extra["personatalk"]["message_id"])
    assert (saved.content, saved.status) == (text.strip(), "complete")
    usage = chunks[-1].usage  # counted by the engine: its prompt (persona, history, line) and the reply
    assert usage.prompt_tokens == saved.timings["prompt_tokens"] > 20
    assert usage.completion_tokens == saved.timings["completion_tokens"] > 0
    assert (finish == ["length"]) == (saved.timings.get("hit_token_limit") is True)
