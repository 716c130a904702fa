"""Voice on the chat page in a real Chromium, with real speech and the real models: Whisper tiny.en
(ASR) and Piper (TTS) on the voice worker, the scripted LLM ("You said: X. I am Nova. Anything else?").

The microphone is Chromium's fake device playing a WAV (`--use-file-for-fake-audio-capture=<wav>%noloop`):
one browser per WAV. How %noloop behaves (measured on Debian's chromium): the file starts when the
page opens a capture stream (getUserMedia), plays once, then the device gives silence; another
getUserMedia while that stream is open shares it (no restart), one after its tracks stopped, or
in another context, starts the file again. So each test opens its page in a fresh context and the
WAV's clock starts when the page opens the microphone (window.ptVoice.micOpenedAt): push-to-talk
is held for the WAV's length from then; a call hears the WAV as it plays.

The assertions read the page's own voice state, window.ptVoice (see apps/web/static/web/voice.js).
"""

import re
import time

import pytest
from playwright.sync_api import expect, sync_playwright

from apps.characters.models import Character
from apps.conversations.models import Message
from apps.core.audio import wav_bytes
from tests.speech import audioeval_clip, piper_says, silence, words
from tests.web.conftest import CHROMIUM, CHROMIUM_ARGS, PASSWORD, log_in, page_check, phone_page

pytestmark = pytest.mark.django_db(transaction=True)

RATE = 16000
# "slowly": the scripted engine writes 200 ms a word, so the reply's first sentence is spoken while the rest is
# written, with seconds to spare on a loaded machine (at "slow"'s 50 ms a word TTS once lost the race: 0.3 s).
SLOW_ASK = "Please answer slowly. Take your time with every single word, because I really like to listen to you."


def wav_file(path, pcm: bytes) -> str:
    path.write_bytes(wav_bytes(pcm, RATE))
    return str(path)


def seconds(pcm: bytes) -> float:
    return len(pcm) / 2 / RATE


@pytest.fixture(scope="module")
def web_env(web_env):
    """Partial transcripts every second of new speech too (not only at pauses), so the page shows
    the user's words forming while the button is held."""
    return {**web_env, "ASR_PARTIAL_INTERVAL_MS": "1000"}


@pytest.fixture(scope="module")
def playwright(live_env, llm_worker, voice_worker):
    """Sync Playwright for the module (see conftest's `browser` for why Django's async guard is off)."""
    with pytest.MonkeyPatch.context() as env, sync_playwright() as playwright:
        env.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        yield playwright


@pytest.fixture
def speaking(playwright, web, tmp_path):
    """`speaking(pcm)`: a page (phone-sized, fresh context) in a Chromium whose microphone says `pcm`
    once; fails the test on console errors or warnings."""
    opened = []

    def open_page(pcm: bytes | None = None, *, init_script: str | None = None):
        args = list(CHROMIUM_ARGS)
        if pcm is not None:
            args.append(f"--use-file-for-fake-audio-capture={wav_file(tmp_path / f'mic{len(opened)}.wav', pcm)}%noloop")
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=args, ignore_default_args=["--mute-audio"])
        page = phone_page(browser, web.url, init_script=init_script)
        opened.append((browser, page.console_problems))
        return page

    yield open_page
    for browser, _ in opened:
        browser.close()
    found = [p for _, problems in opened for p in problems.unexpected()]
    assert found == [], f"console errors or warnings: {found}"


@pytest.fixture
def nova():
    return Character.objects.create(
        name="Nova",
        slug="nova",
        persona="You are Nova, a cheerful astronomy guide.",
        description="Points out planets and constellations.",
        greeting="Hi! I'm Nova. Ask me about tonight's sky, the planets and the stars.",
        is_published=True,
    )


def open_chat(page) -> None:
    log_in(page, "lena", PASSWORD)
    page.goto("/chat/nova/")
    expect(page.locator("#connection")).to_have_text("Connected")
    expect(page.get_by_role("button", name="Hold to talk")).to_be_enabled()


def voice(page) -> dict:
    return page.evaluate("window.ptVoice")


def wait_turn_done(page, index: int = 0, timeout: float = 60_000) -> dict:
    page.wait_for_function(
        f"() => window.ptVoice.turns.length > {index} && window.ptVoice.turns[{index}].replyDoneAt !== null",
        timeout=timeout,
    )
    return voice(page)["turns"][index]


def hold_to_talk(page, pcm: bytes, *, key: str | None = None) -> None:
    """Hold push-to-talk (the button, or `key`) from the moment the microphone opens until the WAV has played."""
    button = page.get_by_role("button", name="Hold to talk")
    if key:
        page.locator("#history").focus()
        page.keyboard.down(key)
    else:
        button.hover()
        page.mouse.down()
    page.wait_for_function("() => window.ptVoice.micOpenedAt !== null")
    expect(page.locator("#voice-state")).to_have_text("Listening…")
    opened = page.evaluate("window.ptVoice.micOpenedAt")
    left = opened + seconds(pcm) * 1000 + 150 - page.evaluate("performance.now()")
    time.sleep(max(0.0, left / 1000))
    if key:
        page.keyboard.up(key)
    else:
        page.mouse.up()


# Records what the page shows while the user talks: the forming message's texts and the level meter.
WATCH_TALK = """() => {
  window.watched = {forming: [], levels: []};
  new MutationObserver(() => {
    const forming = document.querySelector("#history .msg-user.forming .text");
    if (forming && forming.textContent && window.watched.forming.at(-1) !== forming.textContent)
      window.watched.forming.push(forming.textContent);
  }).observe(document.getElementById("history"), {subtree: true, childList: true, characterData: true});
  setInterval(() => window.watched.levels.push(document.getElementById("level").value), 50);
}"""


def assert_heard(transcript: str, expected: list[str]) -> None:
    heard = words(transcript or "")
    assert sum(w in heard for w in expected) >= len(expected) - 1, (heard, expected)


def test_push_to_talk_transcribes_and_speaks_the_reply_while_it_is_written(speaking, nova, member):
    speech = piper_says(SLOW_ASK) + silence(1.0)  # the user stops talking, then lets go
    page = speaking(speech)
    open_chat(page)
    page.evaluate(WATCH_TALK)
    hold_to_talk(page, speech)
    turn = wait_turn_done(page)
    assert turn["mode"] == "ptt" and turn["status"] == "complete" and not turn["interrupted"], turn
    assert_heard(turn["transcript"], words(SLOW_ASK))
    # The transcript formed on the page while the button was held (partials), the final one replaced it.
    watched = page.evaluate("window.watched")
    assert turn["partials"] >= 1 and len(watched["forming"]) >= 1, watched["forming"]
    assert max(watched["levels"]) > 0.1  # the meter moved with the speech
    expect(page.locator("#history .msg-user.forming")).to_have_count(0)
    # After the permission, the picker lists the microphones (Chromium's fake ones here).
    expect(page.locator("#mic")).to_be_enabled()
    assert page.locator("#mic option").count() >= 1
    # The transcript is the user's message on the page, the reply under it.
    user = page.locator("#history .msg-user").last
    expect(user.locator(".text")).to_have_text(turn["transcript"])
    reply = page.locator("#history .msg-assistant").last
    expect(reply.locator(".text")).to_contain_text("I am Nova. Anything else?")
    # Audio was scheduled, its first sentence sent to TTS before the reply had been written to its end (the
    # server's clock: on two loaded cores Piper's first unit can take longer than the whole reply's writing).
    assert turn["chunks"] >= 2
    assert turn["speechEndAt"] < turn["firstAudioAt"] < turn["replyDoneAt"], turn
    assert turn["speechEndAt"] < turn["llmEndAt"] < turn["replyDoneAt"], turn
    saved = Message.objects.filter(role=Message.Role.ASSISTANT, content__contains="Anything else").get()
    assert 0 < saved.timings["first_unit_at_ms"] < saved.timings["llm_end_at_ms"] - 2000, saved.timings  # of ~5 s
    assert turn["firstAudioStartsAt"] >= turn["firstAudioAt"] - 1
    # What the page adds: the release to the stream's end sent, the first chunk's arrival to its scheduling.
    # (a figure, not a bound: on two loaded cores it can pass 100 ms; the flush must not have waited out its timeout)
    assert turn["flushedBy"] == "worklet", turn
    page_added = (turn["endSentAt"] - turn["speechEndAt"]) + (turn["firstAudioAt"] - turn["firstChunkAt"])
    print(f"\nFIGURE ptt page-added latency (flush + scheduling): {page_added:.1f} ms")
    print(f"\nFIGURE ptt release→first audio scheduled: {turn['firstAudioAt'] - turn['speechEndAt']:.0f} ms")
    expect(page.locator("#voice-state")).to_have_text("Speaking")
    page_check(page, "voice-ptt-speaking")
    # The latency detail: the page's measure, then the server's stages when opened.
    latency = reply.locator("details.latency")
    expect(latency.locator("dt").first).to_have_text("Release → first audio scheduled")
    latency.locator("summary").click()
    expect(latency.locator("dt", has_text="Reply: first audio at ms")).to_have_count(1)
    expect(latency.locator("dt", has_text="Transcription: asr")).not_to_have_count(0)
    page.wait_for_function("() => window.ptVoice.activeSources === 0", timeout=30_000)  # played to its end
    expect(page.locator("#voice-state")).to_have_text("Voice: idle")


def test_the_chat_page_weighs_under_150_kb(speaking, nova, member):
    """The chat page with all its scripts (the worklet too), styles and images, uncompressed."""
    page = speaking()
    open_chat(page)
    urls = page.evaluate("performance.getEntriesByType('resource').map((e) => e.name)")
    urls = {u for u in urls if "/static/" in u} | {page.url, f"{web_base(page)}/static/web/capture-worklet.js"}
    sizes = {u: len(page.request.get(u).body()) for u in urls}
    assert any(u.endswith("/voice.js") for u in sizes) and any(u.endswith("/playback.js") for u in sizes)
    total_kb = sum(sizes.values()) / 1024
    print(f"\nFIGURE chat page weight: {total_kb:.1f} KB ({len(sizes)} files)")
    assert total_kb <= 150, sizes


def web_base(page) -> str:
    return page.evaluate("location.origin")


def test_space_bar_push_to_talk_with_recorded_speech(speaking, nova, member):
    clip, transcript = audioeval_clip("quick_brown_fox")
    speech = clip + silence(0.2)
    page = speaking(speech)
    open_chat(page)
    hold_to_talk(page, speech, key="Space")
    turn = wait_turn_done(page)
    assert_heard(turn["transcript"], words(transcript))
    assert turn["chunks"] >= 2 and turn["firstAudioAt"] < turn["replyDoneAt"]
    print(f"\nFIGURE ptt (space) release→first audio scheduled: {turn['firstAudioAt'] - turn['speechEndAt']:.0f} ms")
    assert page.locator("#message").input_value() == ""  # the held space typed nothing


def test_call_speaks_the_greeting_and_the_user_talking_over_it_stops_it(speaking, nova, member):
    from apps.characters.services import greeting_audio_render
    from workers.tts.tasks import _synthesize

    assert greeting_audio_render(character_id=nova.pk, synthesize=_synthesize) == "rendered"
    clip, transcript = audioeval_clip("quick_brown_fox")
    page = speaking(silence(0.8) + clip + silence(1.5))
    open_chat(page)
    page.get_by_role("button", name="Start a call").click()
    expect(page.get_by_role("button", name="Hang up")).to_be_visible()
    page.wait_for_function("() => window.ptVoice.greeting && window.ptVoice.greeting.chunks > 0")
    page_check(page, "voice-call-greeting")
    # The user talks at 0.8 s, while the greeting (several seconds) still plays: the page stops it.
    page.wait_for_function("() => window.ptVoice.greeting.stopped === true", timeout=10_000)
    state = voice(page)
    assert state["interruptions"][0]["by"] == "speech" and state["interruptions"][0]["stopped"] >= 1
    turn = wait_turn_done(page)
    assert turn["mode"] == "call" and turn["status"] == "complete", turn
    assert_heard(turn["transcript"], words(transcript))
    assert turn["chunks"] >= 2 and turn["firstAudioAt"] < turn["replyDoneAt"]
    print(f"\nFIGURE call end of speech→first audio scheduled: {turn['firstAudioAt'] - turn['speechEndAt']:.0f} ms")
    expect(page.locator("#history .msg-user .text").last).to_have_text(turn["transcript"])
    page.get_by_role("button", name="Hang up").click()
    expect(page.get_by_role("button", name="Start a call")).to_be_visible()
    expect(page.locator("#voice-state")).to_have_text("Voice: idle")
    page.wait_for_function("() => window.ptVoice.activeSources === 0")


def test_a_muted_mic_lets_the_greeting_play_to_its_end(speaking, nova, member):
    """ "Mute my mic while the character speaks": what the mic hears during the greeting (on speakers
    without echo cancellation, the greeting itself) neither stops it nor reaches the server."""
    from apps.characters.services import greeting_audio_render
    from workers.tts.tasks import _synthesize

    assert greeting_audio_render(character_id=nova.pk, synthesize=_synthesize) == "rendered"
    # About a second, 2 s into the call: inside the greeting (~4.5 s), which starts 0.2-1 s into it.
    clip, _ = audioeval_clip("hello_world")
    page = speaking(silence(2.0) + clip + silence(3.0))
    open_chat(page)
    page.get_by_text("Microphone settings").click()
    page.get_by_label(re.compile("Mute my mic while Nova speaks")).check()
    page.get_by_role("button", name="Start a call").click()
    page.wait_for_function("() => window.ptVoice.greeting && window.ptVoice.greeting.chunks > 0")
    began = page.evaluate("performance.now() - window.ptVoice.micOpenedAt")
    assert began < 2000, f"the greeting began {began:.0f} ms into the call, after the user spoke: nothing to mute"
    page.wait_for_function("() => window.ptVoice.activeSources === 0", timeout=20_000)  # played to its end
    state = voice(page)
    assert state["greeting"]["stopped"] is False and state["interruptions"] == []
    time.sleep(1.5)
    assert voice(page)["turns"] == []  # the server heard silence: no turn
    page.get_by_role("button", name="Hang up").click()


def test_talking_over_the_reply_in_a_call_stops_its_audio(speaking, nova, member):
    # A long reply ("at length": the echo three times, ~18 s of speech) and the user talking 11 s after the
    # question: within the reply on a fast machine (its first audio 1-3.5 s after the question) and on
    # two slow, loaded cores alike (5 s and more; a 4 s pause once came before the first audio).
    ask = piper_says("Please answer slow and at length. Tell me about the moon, the stars and the planets.")
    interruption, _ = audioeval_clip("hello_world")
    # No greeting audio was rendered for this character: the call starts silent.
    page = speaking(silence(0.5) + ask + silence(11.0) + interruption + silence(1.5))
    open_chat(page)
    page.evaluate("""() => {
      // every state the page takes, however briefly (a poll missed an `interrupted` that lasted < 10 ms)
      let state = window.ptVoice.state;
      window.seen = [state];
      Object.defineProperty(window.ptVoice, "state", {
        get: () => state,
        set: (next) => { if (next !== state) window.seen.push(next); state = next; },
        configurable: true,
      });
    }""")
    page.get_by_role("button", name="Start a call").click()
    page.wait_for_function(
        "() => window.ptVoice.turns.length > 0 && window.ptVoice.turns[0].chunks > 0", timeout=30_000
    )
    page.wait_for_function("() => window.ptVoice.interruptions.length > 0", timeout=30_000)
    state = voice(page)
    first, stop = state["turns"][0], state["interruptions"][0]
    assert stop["by"] == "server" and stop["stopped"] >= 1, state  # scheduled audio was stopped
    assert first["interrupted"] is True
    assert "interrupted" in page.evaluate("window.seen")
    assert stop["turnChunks"] >= 1
    page_check(page, "voice-call-interrupted")
    second = wait_turn_done(page, index=1)
    assert "hello" in words(second["transcript"])
    assert second["chunks"] >= 1
    first = voice(page)["turns"][0]
    assert first["status"] == "interrupted" or first["replyDoneAt"] < stop["at"], first
    assert first["chunks"] == stop["turnChunks"]  # no chunk of the stopped reply was scheduled after it
    page.get_by_role("button", name="Hang up").click()


def test_the_stop_button_silences_a_spoken_reply_at_once(speaking, nova, member):
    speech = piper_says(SLOW_ASK) + silence(0.2)
    page = speaking(speech)
    open_chat(page)
    hold_to_talk(page, speech)
    page.wait_for_function(
        "() => window.ptVoice.turns[0].chunks > 0 && window.ptVoice.activeSources > 0", timeout=30_000
    )
    page.get_by_role("button", name="Stop").click()
    assert page.evaluate("window.ptVoice.activeSources") == 0
    expect(page.locator("#voice-state")).to_have_text("Interrupted")
    turn = wait_turn_done(page)
    assert turn["interrupted"] is True
    chunks = turn["chunks"]
    time.sleep(0.5)
    assert voice(page)["turns"][0]["chunks"] == chunks  # late chunks of the stopped turn are not played
    assert page.evaluate("window.ptVoice.activeSources") == 0
    page_check(page, "voice-stopped")


def test_pressing_to_talk_over_the_reply_stops_it(speaking, nova, member):
    from apps.realtime.protocol import ErrorCode

    speech = piper_says(SLOW_ASK) + silence(0.2)
    page = speaking(speech)  # then the microphone hears silence
    open_chat(page)
    hold_to_talk(page, speech)
    page.wait_for_function(
        "() => window.ptVoice.turns[0].chunks > 0 && window.ptVoice.activeSources > 0", timeout=30_000
    )
    page.get_by_role("button", name="Hold to talk").hover()
    page.mouse.down()  # the user wants to say something else
    assert page.evaluate("window.ptVoice.activeSources") == 0
    state = voice(page)
    assert state["interruptions"][0]["by"] == "ptt" and state["interruptions"][0]["stopped"] >= 1
    assert state["turns"][0]["interrupted"] is True
    expect(page.locator("#voice-state")).to_have_text("Listening…")
    time.sleep(0.6)
    page.mouse.up()  # … but says nothing: the server's error is shown with its code's meaning
    error = page.locator("#errors p")
    expect(error).to_have_attribute("data-code", re.compile("^(no_speech|empty_audio)$"), timeout=30_000)
    code = error.get_attribute("data-code")
    expect(error).to_have_text(f"{ErrorCode.DESCRIPTIONS[code].replace('`', '')} ({code})")
    assert voice(page)["turns"][0]["status"] == "interrupted"
    expect(page.locator("#voice-state")).to_have_text("Voice: idle")


# Init scripts run in every frame, about:blank included (no mediaDevices there).
def test_a_call_dropped_with_the_socket_ends_and_can_start_again(speaking, web, nova, member):
    page = speaking(silence(30))
    open_chat(page)
    page.get_by_role("button", name="Start a call").click()
    expect(page.get_by_role("button", name="Hang up")).to_be_visible()
    page.wait_for_function("() => window.ptVoice.micOpenedAt !== null")
    expect(page.locator("#voice-state")).to_have_text("Listening…")
    # Chromium itself logs each refused reconnection while the server is down.
    page.console_problems.allow(r"^error: WebSocket connection to 'ws://[^']+/ws' failed: .*ERR_CONNECTION_REFUSED$")
    web.stop()
    expect(page.locator("#connection")).to_contain_text("reconnecting")
    expect(page.get_by_role("button", name="Start a call")).to_be_disabled()  # the call ended with the socket
    expect(page.locator("#voice-state")).to_have_text("Voice: idle")
    web.start()
    expect(page.locator("#connection")).to_have_text("Connected", timeout=30_000)
    page.get_by_role("button", name="Start a call").click()
    expect(page.get_by_role("button", name="Hang up")).to_be_visible()
    expect(page.locator("#voice-state")).to_have_text("Listening…")
    page.get_by_role("button", name="Hang up").click()
    expect(page.get_by_role("button", name="Start a call")).to_be_enabled()
    time.sleep(0.3)
    expect(page.locator("#errors")).to_be_empty()  # the hang-up was for a call the new socket knows
    # Another microphone from the picker: the stream is opened again on it.
    page.get_by_text("Microphone settings").click()
    picker = page.get_by_label("Microphone", exact=True)
    values = picker.locator("option").evaluate_all("(options) => options.map((o) => o.value)")
    assert len(values) >= 2, values  # Chromium's fake device and its two fake inputs
    opened = voice(page)["micOpenedAt"]
    picker.select_option(values[-1])
    page.wait_for_function(f"() => window.ptVoice.micOpenedAt > {opened}")
    assert page.evaluate("window.ptVoice.micOpenedAt") > opened
    expect(picker).to_have_value(values[-1])
    expect(page.locator("#voice-problem")).to_be_empty()


DENY = """if (navigator.mediaDevices)
  navigator.mediaDevices.getUserMedia = () => Promise.reject(new DOMException("no", "%s"));"""


@pytest.mark.parametrize(
    ("script", "message", "code"),
    [
        (DENY % "NotAllowedError", "Microphone access was denied", "mic_denied"),
        (DENY % "NotFoundError", "No microphone was found", "mic_missing"),
        ("Object.defineProperty(window, 'isSecureContext', {value: false});", "HTTPS", "insecure_origin"),
    ],
)
def test_microphone_problems_are_explained(speaking, nova, member, script, message, code):
    page = speaking(init_script=script)
    open_chat(page)
    page.get_by_role("button", name="Hold to talk").hover()
    page.mouse.down()
    page.mouse.up()
    problem = page.locator("#voice-problem p")
    expect(problem).to_contain_text(message)
    expect(problem).to_have_attribute("data-code", code)
    expect(page.locator("#voice-state")).to_have_text("Voice: idle")
    page.get_by_role("button", name="Start a call").click()
    expect(problem).to_have_attribute("data-code", code)
    expect(page.get_by_role("button", name="Start a call")).to_be_enabled()
    time.sleep(0.3)
    expect(page.locator("#errors")).to_be_empty()  # the stream closed empty is no server error to show
    if code == "mic_denied":
        page_check(page, "voice-mic-denied")


def test_every_error_code_has_its_meaning_on_the_page(speaking, nova, member):
    from apps.realtime.protocol import ErrorCode

    page = speaking()
    open_chat(page)
    meanings = page.evaluate("JSON.parse(document.getElementById('error-meanings').textContent)")
    assert meanings == ErrorCode.DESCRIPTIONS
    page_check(page, "voice-idle")


def test_timings_view_shows_only_my_replies(client, django_user_model, nova, member):
    from django.test import Client

    from apps.conversations.models import ChatSession, Message

    session = ChatSession.objects.create(user=member, character=nova)
    Message.objects.create(session=session, role="user", content="hi", timings={"asr_ms": 120.5})
    reply = Message.objects.create(
        session=session, role="assistant", content="hello", timings={"first_audio_at_ms": 400}
    )
    client.login(username="lena", password=PASSWORD)
    response = client.get(f"/messages/{reply.pk}/timings")
    assert response.status_code == 200
    assert response.json() == {"reply": {"first_audio_at_ms": 400}, "utterance": {"asr_ms": 120.5}}
    django_user_model.objects.create_user(username="mallory", password=PASSWORD)
    client.login(username="mallory", password=PASSWORD)
    assert client.get(f"/messages/{reply.pk}/timings").status_code == 404
    assert client.get("/messages/not-a-uuid/timings").status_code == 404
    # A fresh client, not logout(): logging out ends the user's sockets through the channel layer,
    # which cannot run in this thread while the module's sync Playwright holds an event loop in it.
    assert Client().get(f"/messages/{reply.pk}/timings").status_code == 302  # to the login page


# Renders a tone through the capture worklet in an OfflineAudioContext at `rate`; returns the 16 kHz
# samples it posted (the page's origin serves the worklet module, as on the chat page).
WORKLET_TONE = """async ([rate, freq]) => {
  const ctx = new OfflineAudioContext(1, rate, rate);
  await ctx.audioWorklet.addModule("/static/web/capture-worklet.js");
  const node = new AudioWorkletNode(ctx, "pt-capture", {numberOfInputs: 1, numberOfOutputs: 0, processorOptions: {frameMs: 20}});
  const frames = [];
  node.port.onmessage = (e) => e.data.pcm && frames.push(Array.from(new Int16Array(e.data.pcm)));
  const osc = new OscillatorNode(ctx, {frequency: freq});
  const gain = new GainNode(ctx, {gain: 0.5});
  osc.connect(gain).connect(node);
  osc.start();
  await ctx.startRendering();
  // The port delivers the frames after the rendering: wait for the second's ~49 (less the one being filled).
  for (let waited = 0; frames.length < 48 && waited < 10000; waited += 20)
    await new Promise((resolve) => setTimeout(resolve, 20));
  await new Promise((resolve) => setTimeout(resolve, 50));
  return frames.flat();
}"""


@pytest.mark.parametrize("rate", [44100, 48000, 96000])
def test_the_worklet_resamples_any_device_rate_to_16_khz_without_aliasing(speaking, nova, member, rate):
    import numpy as np

    page = speaking()
    open_chat(page)

    def tone(freq: float) -> tuple[float, float]:
        pcm = np.array(page.evaluate(WORKLET_TONE, [rate, freq]), dtype=np.float64) / 32768
        assert abs(len(pcm) - RATE) <= 2 * RATE * 20 / 1000  # one second at 16 kHz (less a frame being filled)
        spectrum = np.abs(np.fft.rfft(pcm[800:] * np.hanning(len(pcm) - 800)))
        peak = np.fft.rfftfreq(len(pcm) - 800, 1 / RATE)[spectrum.argmax()]
        return peak, float(np.sqrt(np.mean(pcm[800:] ** 2)))

    peak, level = tone(1000)
    assert abs(peak - 1000) < 5 and level > 0.3  # a 1 kHz tone stays 1 kHz, at its level (0.5 / √2)
    _, aliased = tone(12000)  # above the new Nyquist: would fold to 4 kHz without the low-pass
    assert aliased < 0.01 * level, aliased
