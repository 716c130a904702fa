"""What `make run` serves, in a browser: the embedded mode (SQLite, in-process layer and tasks,
static files found by whitenoise without collectstatic) with the demo data and the real SmolLM2."""

import re

import pytest
from django.conf import settings
from playwright.sync_api import expect

from tests import stack
from tests.web.conftest import LOG_DIR, log_in, page_check
from tests.web.test_chat import WATCH_REPLY, reply_done, send

pytestmark = pytest.mark.model


@pytest.fixture
def embedded(tmp_path):
    env = {
        "DJANGO_SETTINGS_MODULE": "personatalk.settings",
        "PERSONATALK_VAR_DIR": str(tmp_path),
        "LLM_CACHE_DIR": str(settings.LLM_CACHE_DIR),  # the converted SmolLM2, as `make run` keeps it
        "LLM_MAX_NEW_TOKENS": "40",
        "LLM_SEED": "7",
        "MEMORY_EXTRACTION": "false",  # no embedding model to load: this is about the page
        "DJANGO_ALLOW_ASYNC_UNSAFE": None,
        **{
            k: None
            for k in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "TASKS_IN_PROCESS", "LLM_BACKEND", "CHROMA_URL")
        },
    }
    stack.manage("migrate", "--noinput", env=env)
    stack.manage("seed_demo", env=env)
    daphne, url = stack.start_daphne(env=env, log_dir=LOG_DIR)
    yield url
    daphne.stop()


def test_embedded_mode_streams_a_smollm2_reply(embedded, open_page):  # the server outlives the page
    page = open_page(embedded)
    log_in(page, settings.DEMO_USERNAME, "demo")
    page.get_by_role("button", name="New chat with Nova").click()
    expect(page.locator("#connection")).to_have_text("Connected")
    page.evaluate(WATCH_REPLY)
    send(page, "Hi! What can I see in the sky tonight?")
    reply_done(page, timeout_s=120)  # the first reply loads the model
    expect(page.locator("#errors")).to_be_empty()
    reply = page.locator("#history .msg-assistant .text").last.inner_text()
    assert len(reply.split()) >= 3 and not re.match(r"\s*[\[(]\w+[\])]", reply), reply  # words, no emotion tag
    steps = page.evaluate("window.replySteps")
    assert len(steps) >= 2 and steps[-1].strip() == reply.strip(), steps  # it arrived as it was written
    page_check(page, "chat-smollm2")
    page.reload()  # saved as shown
    expect(page.locator("#history .msg-assistant .text").last).to_have_text(reply)


def test_embedded_mode_push_to_talk_with_every_real_model(embedded, browser, tmp_path):
    """Push-to-talk as `make run` serves it: Chromium's microphone says a question, Whisper tiny.en
    transcribes it, SmolLM2 answers and Piper speaks the answer, all in the one Daphne process."""
    from tests.speech import piper_says, silence, words
    from tests.web.conftest import CHROMIUM, CHROMIUM_ARGS, phone_page
    from tests.web.test_voice import hold_to_talk, wait_turn_done, wav_file

    question = "What can I see in the sky tonight?"
    speech = silence(0.3) + piper_says(question) + silence(0.7)
    mic = f"--use-file-for-fake-audio-capture={wav_file(tmp_path / 'mic.wav', speech)}%noloop"
    chromium = browser.browser_type.launch(
        executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, mic], ignore_default_args=["--mute-audio"]
    )
    try:
        page = phone_page(chromium, embedded)
        log_in(page, settings.DEMO_USERNAME, "demo")
        page.get_by_role("button", name="New chat with Nova").click()
        expect(page.locator("#connection")).to_have_text("Connected")
        hold_to_talk(page, speech)
        turn = wait_turn_done(page, timeout=180_000)  # the first voice turn loads Whisper, SmolLM2 and Piper
        assert turn["status"] == "complete" and not turn["interrupted"], turn
        heard = words(turn["transcript"])
        assert sum(w in heard for w in words(question)) >= len(words(question)) - 1, heard
        expect(page.locator("#history .msg-user .text").last).to_have_text(turn["transcript"])
        reply = page.locator("#history .msg-assistant .text").last.inner_text()
        assert len(reply.split()) >= 3 and words(turn["replyText"]) == words(reply), (reply, turn)  # spoken as written
        assert turn["chunks"] >= 1 and turn["speechEndAt"] < turn["firstAudioAt"] <= turn["replyDoneAt"], turn
        print(
            f"\nFIGURE embedded real models: release→first audio scheduled (models loaded on first use) {turn['firstAudioAt'] - turn['speechEndAt']:.0f} ms"
        )
        page_check(page, "voice-embedded-smollm2")
        assert page.console_problems.unexpected() == []
    finally:
        chromium.close()
