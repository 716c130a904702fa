"""The engines themselves: the real SmolLM2 (also behind an OpenAI-compatible server), settings errors,
the scripted engine."""

import re
import time

import pytest
from django.conf import settings
from django.test import override_settings

from tests.workers.openai_server import serve
from workers.llm import engines
from workers.llm.engines import (
    EngineConfigError,
    EngineError,
    OpenAIEngine,
    ScriptedEngine,
    TransformersEngine,
    get_engine,
)

CHAT = [
    {"role": "system", "content": "You are Nova, a cheerful astronomy guide. Answer in one short sentence."},
    {"role": "user", "content": "Hi! What is your name?"},
]


@pytest.fixture(scope="module")
def smollm2():
    return TransformersEngine(cache_dir=settings.LLM_CACHE_DIR, seed=3, max_new_tokens=40)


@pytest.mark.model
def test_smollm2_streams_a_reply_token_by_token(smollm2):
    deltas = list(smollm2.stream(CHAT))
    text = "".join(deltas)
    assert len(deltas) > 3
    assert text.strip()
    assert "<|im_end|>" not in text and "<|im_start|>" not in text
    assert smollm2.count_tokens(text) <= 40


@pytest.mark.model
def test_should_stop_ends_the_stream_at_the_next_token(smollm2):
    seen = []
    for delta in smollm2.stream(CHAT, should_stop=lambda: len(seen) >= 2):
        seen.append(delta)
    assert len(seen) == 2


@pytest.mark.model
def test_converted_copy_is_reused(smollm2):
    gguf = engines.default_gguf_path()
    target = engines.converted_model_dir(gguf, settings.LLM_CACHE_DIR)
    before = (target / "config.json").stat().st_mtime
    started = time.monotonic()
    assert engines.converted_model_dir(gguf, settings.LLM_CACHE_DIR) == target
    assert time.monotonic() - started < 1
    assert (target / "config.json").stat().st_mtime == before


@pytest.mark.model
def test_openai_engine_streams_smollm2_through_a_real_server(smollm2):
    url, stop = serve(smollm2, api_key="sk-test")
    try:
        client = OpenAIEngine(base_url=url, api_key="sk-test", max_new_tokens=20)
        deltas = list(client.stream(CHAT))
    finally:
        stop()
    assert len(deltas) > 1
    assert "".join(deltas).strip() and "<|im_end|>" not in "".join(deltas)


def test_missing_model_names_the_setting(tmp_path):
    with pytest.raises(EngineConfigError, match="LLM_MODEL_PATH"):
        TransformersEngine(model_path=tmp_path / "nope.gguf", cache_dir=tmp_path)


def test_unknown_backend_names_the_setting():
    engines.reset_engine()
    try:
        with override_settings(LLM_BACKEND="gpt-9"), pytest.raises(EngineConfigError, match="LLM_BACKEND"):
            get_engine()
    finally:
        engines.reset_engine()


def test_openai_backend_needs_a_base_url():
    engines.reset_engine()
    try:
        with (
            override_settings(LLM_BACKEND="openai", OPENAI_BASE_URL=""),
            pytest.raises(EngineConfigError, match="OPENAI_BASE_URL"),
        ):
            get_engine()
    finally:
        engines.reset_engine()


def test_scripted_engine_is_deterministic_and_can_fail():
    engine = ScriptedEngine()
    assert "".join(engine.stream(CHAT[:1] + [{"role": "user", "content": "hi"}])) == (
        "[happy] You said: hi. I am Nova. Anything else?"
    )
    assert "".join(engine.stream(CHAT[:1] + [{"role": "user", "content": "say it at length"}])) == (
        "[happy] You said: say it at length. Once more: say it at length. And again: say it at length."
        " I am Nova. Anything else?"
    )
    with pytest.raises(EngineError):
        list(engine.stream([{"role": "user", "content": "explode"}]))


@pytest.mark.model
def test_a_conversion_cleans_up_after_one_that_was_killed(tmp_path):
    import os

    stale, fresh = tmp_path / ".tmp-killed", tmp_path / ".tmp-running"
    for folder in (stale, fresh):
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"half written")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    target = engines.converted_model_dir(engines.default_gguf_path(), tmp_path)
    assert (target / "config.json").exists()
    assert not stale.exists() and fresh.exists()  # another process may still be writing that one


@pytest.mark.model
def test_the_repetition_penalty_spares_the_users_words(smollm2):
    """Penalised: what the character said (its earlier replies; this reply's tokens join as written).
    Spared: the persona and the user's words, which a reply often has to repeat (a remembered name)."""
    said = set(
        smollm2._said_before(
            [
                {"role": "system", "content": "You are Nova."},
                {"role": "user", "content": "I have a dog called Biscuit."},
                {"role": "assistant", "content": "Lovely, a comet!"},
                {"role": "user", "content": "What is my dog called?"},
            ]
        ).tolist()
    )
    assert said == set(smollm2.tokenizer.encode("Lovely, a comet!", add_special_tokens=False))
    assert not said & set(smollm2.tokenizer.encode(" Biscuit", add_special_tokens=False))


@pytest.mark.model
def test_a_name_the_user_gave_comes_back_unbent():
    """Greedy SmolLM2 asked about what the user just said: with the user's words penalised as well it
    answered "Biscuzzle, your dog!" (bench/memory_recall.py)."""
    greedy = TransformersEngine(cache_dir=settings.LLM_CACHE_DIR, temperature=0, max_new_tokens=16)
    reply = "".join(
        greedy.stream(
            [
                {"role": "system", "content": "You are Nova, a cheerful astronomy guide."},
                {"role": "user", "content": "I have a dog called Biscuit. What is my dog called?"},
            ]
        )
    )
    # Its first mention: once the reply itself has said the name, its tokens count as said (penalised),
    # and a second mention may bend ("... a dog named Biscuzzle" on some CPUs' int8 kernels).
    first = re.search(r"Bisc\w*", reply)
    assert first and first.group() == "Biscuit", reply
