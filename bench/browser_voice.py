"""Push-to-talk in the chat page (Chromium's fake microphone) vs. the same WAV streamed by a plain client.

Starts PostgreSQL/Redis if needed, a fresh bench database (the demo user gets a password), collects
the static files (the scaled mode serves them with whitenoise), Daphne and the Celery workers with
the real models (Whisper tiny.en, SmolLM2-135M greedy, Piper joe), then for each utterance of
bench/voice_turn.py's utterances() (Piper-made questions and recorded clips), padded with 0.5 s of
silence before and after and written as a 16 kHz 16-bit mono WAV:

- the page: a Chromium launched with that WAV as its fake microphone opens /chat/<slug>/, starts a
  new chat, holds push-to-talk from the moment capture starts (getUserMedia resolves) for the WAV's
  length plus a small margin, and releases. The page records the turn in `window.ptVoice.turns`:
  `speechEndAt` (the release), `firstAudioAt` (first reply chunk scheduled), `firstAudioStartsAt`
  (when it is scheduled to start sounding), all on the page's performance.now() clock;
- the socket: one plain WebSocket client (API token) clears the history, streams the same padded
  PCM as binary 100 ms frames paced in real time, sends `audio_stream_end` and times the first
  `audio_chunk`, as bench/voice_turn.py does.

For each utterance the page's turn comes first; once its reply has played out, the plain client
makes the same turn with that Chromium still open (its microphone live, its capture worklet running,
as between a user's turns), so both halves run on a machine carrying the same browser; then again
with no browser at all (`bare`). On this bench's one small machine the browser's audio threads take
CPU from the workers: `browser_load` (socket − bare) shows that cost apart, which a user's browser,
on the user's own device, does not impose on the server.
browser_added = page (release → first chunk scheduled) − socket (end → first chunk received),
paired per utterance; browser_voice_to_voice = release → first reply audio starting in the page.
Both halves include the 0.5 s trailing pad before the release (the same for both). Each reply's
own server figure (Message.timings.first_audio_at_ms: end of speech received → first audio sent)
is read too: on a loaded machine the server's time varies from turn to turn by far more than the
browser adds, and "client+" (page − its server figure) − (socket − its server figure) is the
browser's own share. Chromium runs on the same machine as the workers here, and its audio threads
(capture stays open after the first press) take CPU from them, which a user's browser would not:
that shows in browser_load and in the server figures, not in client+. Turns whose transcript came
from a partial (the final ASR pass skipped: Message.timings.asr_from_partial) are counted for each
half, and browser_added is also given over the pairs that took the same path.
Bench-side hooks, installed with add_init_script (the page is not changed), record when
getUserMedia resolves, the press, and every frame the page sends on its socket: how long after
capture starts the first PCM frame goes, and release → `audio_stream_end` (the worklet's flush).

page_weight_kb: the uncompressed bytes of the chat page's document, scripts (module imports and the
AudioWorklet module included: the first, unmeasured, turn is made with the weight page open, so
whatever voice loads lazily is loaded), stylesheets, fonts and images.

What Chromium's fake capture does with `--use-file-for-fake-audio-capture=<WAV>%noloop`
(Chromium 156, measured with a 0.5 s silence / 1 s tone / 0.5 s silence / 0.5 s tone file and a
ScriptProcessor on the captured track):
- the file starts playing when getUserMedia resolves (the tone's onset came 505-515 ms after the
  promise resolved, i.e. within one 21 ms buffer of the file's own 500 ms lead-in), not at
  browser start or page load;
- every getUserMedia call restarts it from the beginning: after the previous tracks were stopped,
  in a second page of the same browser, and even while another track of the same page was still
  live (the new track heard the file from its start; what the older one heard was not checked);
- with %noloop it plays once and then gives silence; without it the file loops (the tone came
  back 3.5 s in, the file's length);
- the file is fixed per browser process, so this bench launches one Chromium per WAV (~0.6 s) and
  logs each in with the same saved cookies. A page that keeps one stream open across turns would
  hear the file only in its first one: hence one turn per browser, and the bench checks that
  getUserMedia resolved after the press (a stream opened earlier would put the speech elsewhere).
  The chat page does keep its microphone open after the first press (voice.js ensureMic), and it
  connects its capture worklet after getUserMedia resolves (addModule first): its first PCM frame
  went ~20-60 ms after the file started, eating into the 0.5 s lead-in only. Press → getUserMedia
  resolved took 55-160 ms on a first press (the page's, not the file's: the file waits for it).

    .venv/bin/python bench/browser_voice.py [--rounds 1] [--utterances N] [--browser-nice 0]
"""

import argparse
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import urljoin

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import LOG_DIR, TOKEN, asr_from_partial, pct, scaled_environment  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [  # as tests/web/conftest.py
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
]
RATE = 16000
PAD_S = 0.5
HOLD_MARGIN_S = 0.1  # held past the WAV's end: capture may lag getUserMedia's promise by a buffer
PASSWORD = "bench-browser-voice"
WAV_DIR = LOG_DIR / "browser_voice"
PTT_SELECTOR = "#talk"  # templates/web/chat.html: "Hold to talk" (or hold the space bar)
# Installed before any page script runs (the page itself is not changed): when getUserMedia resolves
# (the fake file starts playing then), and what the page sends on its socket and when.
PAGE_HOOKS = """
(() => {
  window.__ptGum = [];
  window.__ptSent = [];
  window.__ptPress = [];
  addEventListener("pointerdown", () => window.__ptPress.push(performance.now()), true);
  addEventListener("keydown", (e) => e.code === "Space" && !e.repeat && window.__ptPress.push(performance.now()), true);
  const md = navigator.mediaDevices;
  if (md && md.getUserMedia) {
    const original = md.getUserMedia.bind(md);
    md.getUserMedia = async (constraints) => {
      const stream = await original(constraints);
      window.__ptGum.push(performance.now());
      return stream;
    };
  }
  const send = WebSocket.prototype.send;
  WebSocket.prototype.send = function (data) {
    const t = performance.now();
    if (typeof data === "string") {
      try { window.__ptSent.push({ t, type: JSON.parse(data).type }); } catch { /* not JSON */ }
    } else {
      window.__ptSent.push({ t, bytes: data.byteLength });
    }
    return send.call(this, data);
  };
})();
"""


def padded(pcm: bytes) -> bytes:
    silence = bytes(int(PAD_S * RATE) * 2)
    return silence + pcm + silence


def wav_file(path: Path, pcm: bytes) -> Path:
    from apps.core.audio import wav_bytes

    path.write_bytes(wav_bytes(pcm, RATE))
    return path


# --- the plain client -------------------------------------------------------------------------------


class SocketClient:
    def __init__(self, url: str, character: str):
        from websockets.sync.client import connect

        self.ws = connect(url.replace("http", "ws") + "/ws", max_size=None, open_timeout=30).__enter__()
        self.ws.send(json.dumps({"type": "connect", "api_token": TOKEN, "character_name": character}))
        frame = json.loads(self.ws.recv())
        assert frame["type"] == "connected", frame

    def until(self, kind: str) -> dict:
        while True:
            frame = json.loads(self.ws.recv(timeout=120))
            if frame["type"] == "error":
                raise RuntimeError(frame)
            if frame["type"] == kind:
                return frame

    def turn(self, pcm: bytes) -> dict:
        self.ws.send(json.dumps({"type": "clear_history"}))
        self.until("history_cleared")
        self.ws.send(json.dumps({"type": "audio_stream_start"}))
        self.until("audio_stream_started")
        start = time.perf_counter()
        for n, i in enumerate(range(0, len(pcm), 3200)):  # 100 ms frames at real time, on a fixed clock
            self.ws.send(pcm[i : i + 3200])
            time.sleep(max(0.0, start + (n + 1) * 0.1 - time.perf_counter()))
        t0 = time.perf_counter()
        self.ws.send(json.dumps({"type": "audio_stream_end"}))
        marks: dict = {}
        while True:
            frame = json.loads(self.ws.recv(timeout=120))
            now = (time.perf_counter() - t0) * 1000
            kind = frame["type"]
            if kind == "error":
                raise RuntimeError(frame)
            if kind == "asr_end":
                marks["transcript"] = frame["text"]
            elif kind == "audio_chunk":
                marks.setdefault("first_audio_ms", now)
            elif kind == "turn_end":
                marks["turn_end_ms"], marks["message_id"] = now, frame.get("message_id")
                return marks

    def close(self) -> None:
        self.ws.close()


def server_first_audio_ms(message_id) -> float:
    """The server's own figure for a reply: end of speech received → first audio chunk sent
    (Message.timings.first_audio_at_ms, merged before `turn_end` goes out)."""
    from apps.conversations.models import Message

    timings = Message.objects.filter(pk=message_id).values_list("timings", flat=True).first() if message_id else None
    return float((timings or {}).get("first_audio_at_ms", "nan"))


# --- the page -----------------------------------------------------------------------------------------


def launch(playwright, wav: Path, nice: int = 0):
    executable = CHROMIUM
    if nice:  # a lower CPU priority for the whole browser (its children inherit it)
        executable = WAV_DIR / f"chromium-nice-{nice}"
        executable.write_text(f'#!/bin/sh\nexec nice -n {nice} {CHROMIUM} "$@"\n')
        executable.chmod(0o755)
    return playwright.chromium.launch(
        executable_path=executable,
        args=[*CHROMIUM_ARGS, f"--use-file-for-fake-audio-capture={wav}%noloop"],
        ignore_default_args=["--mute-audio"],  # the reply's audio graph must really run
    )


def log_in(playwright, url: str, username: str, wav: Path) -> dict:
    """The demo user's cookies, for every later browser."""
    browser = launch(playwright, wav)
    try:
        page = browser.new_page(base_url=url)
        page.goto("/login/")
        page.get_by_label("Username").fill(username)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(re.compile(r"/$"))  # the gallery: logged in
        return page.context.storage_state()
    finally:
        browser.close()


def open_chat(browser, url: str, state: dict, character: str, *, weigh: bool = False):
    """A new chat with the character in a fresh context; with `weigh`, without HTTP cache, every
    response of the chat page (the one after "New chat") recorded in `page.bench_sizes`."""
    context = browser.new_context(base_url=url, storage_state=state, viewport={"width": 1200, "height": 900})
    context.set_default_timeout(30_000)
    context.add_init_script(PAGE_HOOKS)
    page = context.new_page()
    page.bench_problems = []
    page.on("console", lambda m: m.type in ("error", "warning") and page.bench_problems.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: page.bench_problems.append(f"uncaught: {e}"))
    page.goto(f"/chat/{character}/")
    if weigh:
        context.route("**/*", lambda route: route.continue_())  # routing turns the HTTP cache off
        watch_weights(page)
    with page.expect_navigation():
        page.get_by_role("button", name="New chat").click()  # a fresh session, as clear_history gives the socket
    page.wait_for_load_state("load")
    page.wait_for_selector("#chat[data-connection=open]")
    return page


def has_voice(page) -> bool:
    return (
        page.evaluate("Boolean(window.ptVoice && Array.isArray(window.ptVoice.turns))") and ptt_button(page) is not None
    )


def ptt_button(page):
    return page.locator(PTT_SELECTOR) if page.locator(PTT_SELECTOR).count() else None


def poll(page, expression: str, timeout_s: float):
    """Wait until `expression` is truthy in the page. (Not wait_for_function: the page's CSP forbids
    the eval it uses; page.evaluate goes through the DevTools protocol, which the CSP does not see.)"""
    deadline = time.monotonic() + timeout_s
    while not (value := page.evaluate(expression)):
        if time.monotonic() > deadline:
            raise TimeoutError(f"not true after {timeout_s} s: {expression}")
        time.sleep(0.02)
    return value


def page_turn(page, duration_s: float, timeout_s: float = 120) -> dict:
    """Hold push-to-talk from capture start for the WAV's length (+ margin), release, await the reply."""
    turns_before = page.evaluate("window.ptVoice.turns.length")
    gums_before = page.evaluate("window.__ptGum.length")
    sent_before = page.evaluate("window.__ptSent.length")
    button = ptt_button(page)
    if button is not None:
        button.wait_for()
        poll(page, f"!document.querySelector({PTT_SELECTOR!r}).disabled", 30)  # enabled once connected
        box = button.bounding_box()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.mouse.down()
        release = page.mouse.up
    else:  # the contract's other way: hold the space bar (outside the text box)
        page.locator("#history").focus()
        page.keyboard.down(" ")
        release = lambda: page.keyboard.up(" ")  # noqa: E731
    poll(page, f"window.__ptGum.length > {gums_before}", 10)
    gum_at = page.evaluate(f"window.__ptGum[{gums_before}]")
    if gums_before:
        raise RuntimeError("getUserMedia was called before this press: the fake file played earlier")
    release_at = gum_at + (duration_s + HOLD_MARGIN_S) * 1000
    time.sleep(max(0.0, (release_at - page.evaluate("performance.now()")) / 1000))
    release()
    poll(
        page,
        f"""(() => {{
          const t = window.ptVoice.turns[{turns_before}];
          return t && (t.replyDoneAt != null || ["failed", "error", "interrupted"].includes(t.status));
        }})()""",
        timeout_s,
    )
    turn = page.evaluate(f"window.ptVoice.turns[{turns_before}]")
    sent = page.evaluate(f"window.__ptSent.slice({sent_before})")
    starts = [s["t"] for s in sent if s.get("type") == "audio_stream_start"]
    ends = [s["t"] for s in sent if s.get("type") == "audio_stream_end"]
    frames = [s for s in sent if "bytes" in s and starts and ends and starts[0] <= s["t"] <= ends[0]]
    turn["pressed_to_capture_ms"] = gum_at - page.evaluate("window.__ptPress.at(-1)")
    turn["capture_to_release_ms"] = turn["speechEndAt"] - gum_at
    turn["flush_ms"] = ends[0] - turn["speechEndAt"] if ends else float("nan")  # release → audio_stream_end sent
    turn["captured_s"] = sum(f["bytes"] for f in frames) / 2 / RATE
    turn["first_frame_ms"] = frames[0]["t"] - gum_at if frames else float("nan")  # capture → first PCM sent
    return turn


MODULE_REFERENCES = (
    re.compile(r"""new URL\(\s*["']([^"']+)["']\s*,\s*import\.meta\.url"""),  # addModule(new URL(…))
    re.compile(r"""(?:\bfrom|\bimport)\s*\(?\s*["'](\.{1,2}/[^"']+)["']"""),  # static and dynamic imports
)


def resource_weights(page) -> dict[str, int]:
    """URL → uncompressed bytes of the page's document, scripts, styles, fonts and images, and of the
    modules its scripts name (an AudioWorklet's module is fetched without a response event or a
    resource-timing entry: it is found in the script that adds it, and fetched here)."""
    sizes = dict(page.bench_sizes)
    urls = page.evaluate(
        "performance.getEntriesByType('resource').filter(e => !/^(xmlhttprequest|fetch|beacon)$/"
        ".test(e.initiatorType)).map(e => e.name)"
    )
    scripts = [u for u in sizes if u.endswith(".js")]
    while scripts:
        script = scripts.pop()
        text = page.context.request.get(script).text()
        for pattern in MODULE_REFERENCES:
            for ref in pattern.findall(text):
                url = urljoin(script, ref)
                if url not in sizes and url not in urls:
                    urls.append(url)
                    scripts.append(url)
    for url in urls:
        url = url.split("#")[0]
        if url not in sizes and url.startswith("http"):
            response = page.context.request.get(url)
            if response.ok:
                sizes[url] = len(response.body())
    return sizes


def watch_weights(page) -> None:
    """Record the uncompressed size of every response of the page; a new document starts afresh."""
    page.bench_sizes = {}
    kinds = {"document", "script", "stylesheet", "image", "font", "other"}

    def on_response(response):
        request = response.request
        if request.resource_type not in kinds or not (200 <= response.status < 300):
            return
        if request.resource_type == "document":
            if request.frame != page.main_frame:
                return
            page.bench_sizes = {}  # only the chat page's own document and what it loads count
        try:
            page.bench_sizes[response.url.split("#")[0]] = len(response.body())
        except Exception:  # noqa: BLE001 — a body that is gone (the page navigated on)
            pass

    page.on("response", on_response)


# --- the run ------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1, help="times through the utterances")
    parser.add_argument("--utterances", type=int, default=0, help="only the first N utterances (0: all)")
    parser.add_argument("--character", default="nova")
    parser.add_argument(
        "--browser-nice",
        type=int,
        default=0,
        help="run Chromium at this nice level: on a small shared box it competes with the workers for CPU",
    )
    parser.add_argument("--max-new-tokens", type=int, default=64)
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    from bench.voice_turn import utterances
    from tests import stack

    os.environ["DEMO_PASSWORD"] = PASSWORD
    os.environ.setdefault("STATIC_ROOT", str(LOG_DIR / "static"))
    env = scaled_environment(args.max_new_tokens)
    env |= {"DEMO_PASSWORD": PASSWORD, "STATIC_ROOT": os.environ["STATIC_ROOT"]}
    stack.manage("collectstatic", "--noinput", "--verbosity", "0", env=env)
    # seed_demo sets a password only when it creates the user (the bench database may be older); the
    # demo user's earlier chats go (soft-deleted), so the page weight is the same every run: the
    # sidebar lists only the chat the bench opens.
    username = stack.manage(
        "shell",
        "-c",
        "from django.conf import settings; from django.contrib.auth import get_user_model; "
        "from django.utils import timezone; from apps.conversations.models import ChatSession; "
        "u = get_user_model().objects.get(username=settings.DEMO_USERNAME); "
        f"u.set_password({PASSWORD!r}); u.save(); "
        "ChatSession.objects.filter(user=u, deleted_at=None).update(deleted_at=timezone.now()); print(u.username)",
        env=env,
    ).splitlines()[-1]  # after the shell's own "N objects imported" line

    WAV_DIR.mkdir(parents=True, exist_ok=True)
    clips = []
    for i, (name, pcm) in enumerate(utterances()[: args.utterances or None]):
        pcm = padded(pcm)
        clips.append((name, pcm, wav_file(WAV_DIR / f"{i:02d}.wav", pcm), len(pcm) / 2 / RATE))

    workers = {
        q: stack.start_worker(queues=q, env=env, log_dir=LOG_DIR, name=f"bench-{q}", timeout=300)
        for q in ("asr", "llm", "tts")
    }
    workers["asr_partial"] = stack.start_worker(
        queues="asr_partial", env={**env, "WORKER_NICE": "10"}, log_dir=LOG_DIR, name="bench-asr-partial", timeout=300
    )
    daphne, url = stack.start_daphne(env=env, log_dir=LOG_DIR)
    # This process reads the replies' server timings; sync Playwright keeps an event loop marked running
    # in this thread, which Django's guard takes for async code (as in tests/web/conftest.py). Set only
    # now: the servers above were started without it.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    import django

    django.setup()
    rows, problems, weights = [], [], {}
    try:
        client = SocketClient(url, args.character)
        with sync_playwright() as playwright:
            state = log_in(playwright, url, username, clips[0][2])
            # warm-up, not counted: one turn each way; the page's also gives the page weight
            name, pcm, wav, duration = clips[0]
            browser = launch(playwright, wav, args.browser_nice)
            try:
                page = open_chat(browser, url, state, args.character, weigh=True)
                voice = has_voice(page)
                if voice:
                    page_turn(page, duration)
                else:
                    print("the chat page has no push-to-talk (window.ptVoice, #talk): the page half is skipped")
                weights = resource_weights(page)
                problems += page.bench_problems
            finally:
                browser.close()
            client.turn(pcm)

            for _ in range(args.rounds):
                for name, pcm, wav, duration in clips:
                    if not voice:
                        socket = client.turn(pcm)
                        print(
                            f"  {name[:28]:28} {duration:4.1f} s  socket {socket['first_audio_ms']:6.0f} ms", flush=True
                        )
                        continue
                    browser = launch(playwright, wav, args.browser_nice)
                    try:
                        page = open_chat(browser, url, state, args.character)
                        turn = page_turn(page, duration)
                        problems += page.bench_problems
                        poll(page, "window.ptVoice.activeSources === 0", 60)  # the reply has played out
                        # The baseline with the same Chromium still open, its microphone live and its
                        # capture worklet running (as between a user's turns): on one small machine the
                        # browser's audio threads take CPU from the workers, and both halves pay it alike.
                        socket = client.turn(pcm)
                    finally:
                        browser.close()
                    bare = client.turn(pcm)  # and with no browser on the machine, to show that cost apart
                    row = {
                        "name": name,
                        "duration_s": duration,
                        "page_ms": turn["firstAudioAt"] - turn["speechEndAt"],
                        "page_v2v_ms": turn["firstAudioStartsAt"] - turn["speechEndAt"],
                        "socket_ms": socket["first_audio_ms"],
                        "bare_ms": bare["first_audio_ms"],
                        "page_transcript": turn.get("transcript") or "",
                        "socket_transcript": socket.get("transcript") or "",
                        "status": turn.get("status"),
                        "capture_ms": turn["pressed_to_capture_ms"],
                        "first_frame_ms": turn["first_frame_ms"],
                        "flush_ms": turn["flush_ms"],
                        # the page's own: first audio_chunk received → decoded and scheduled
                        "schedule_ms": turn["firstAudioAt"] - (turn.get("firstChunkAt") or float("nan")),
                        "captured_s": turn["captured_s"],
                        "page_partial": asr_from_partial(turn.get("messageId")),
                        "socket_partial": asr_from_partial(socket.get("message_id")),
                    }
                    row["added_ms"] = row["page_ms"] - row["socket_ms"]
                    row["browser_load_ms"] = row["socket_ms"] - row["bare_ms"]
                    row["server_page_ms"] = server_first_audio_ms(turn.get("messageId"))
                    row["server_socket_ms"] = server_first_audio_ms(socket.get("message_id"))
                    # what each client adds to the server's own figure, the page's less the plain client's:
                    # the browser's share with the server's turn-to-turn drift taken out
                    row["client_added_ms"] = (row["page_ms"] - row["server_page_ms"]) - (
                        row["socket_ms"] - row["server_socket_ms"]
                    )
                    rows.append(row)
                    print(
                        f"  {name[:28]:28} {duration:4.1f} s  page {row['page_ms']:6.0f}  socket "
                        f"{row['socket_ms']:6.0f}  added {row['added_ms']:+5.0f} (beyond the server's "
                        f"{row['client_added_ms']:+4.0f})  page v2v {row['page_v2v_ms']:6.0f}  socket, no browser "
                        f"{row['bare_ms']:6.0f} ms",
                        flush=True,
                    )
        client.close()
    finally:
        daphne.stop()
        for w in workers.values():
            w.stop()

    report(rows, weights, problems, args)


def report(rows: list[dict], weights: dict[str, int], problems: list[str], args) -> None:
    p50 = lambda key: pct([r[key] for r in rows], 0.5)  # noqa: E731
    print()
    if problems:
        print(f"console problems in the pages ({len(problems)}): {problems[:10]}")
    print("page weight (uncompressed):")
    for u, size in sorted(weights.items(), key=lambda kv: -kv[1]):
        print(f"  {size / 1024:7.1f} KB  {u}")
    if rows:
        table(rows, args)
        # A partial transcript standing in for the final pass skips a stage: turns where page and
        # socket took different paths are counted and reported apart.
        same = [r for r in rows if r["page_partial"] == r["socket_partial"]]
        print(
            f"transcript from a partial (final ASR pass skipped): page {sum(r['page_partial'] for r in rows)} "
            f"of {len(rows)}, socket {sum(r['socket_partial'] for r in rows)} of {len(rows)}; "
            f"{len(same)} pairs took the same path"
        )
        if same:
            print(f"  browser_added p50 over those {len(same)}: {pct([r['added_ms'] for r in same], 0.5):+.0f} ms")
        if len(same) < len(rows):
            others = [r["added_ms"] for r in rows if r not in same]
            print(f"  browser_added p50 over the {len(others)} others: {pct(others, 0.5):+.0f} ms")
        print(
            "browser_load: the plain client's figure with Chromium open (mic live) less with no browser on "
            "the machine: the CPU the browser takes from the workers here, which a user's own device would not"
        )
        print(f"RESULT browser_load_ms_p50={p50('browser_load_ms'):.0f}")
        print("browser_client_added: what the page adds beyond the plain client, the server's own difference taken out")
        print(f"RESULT browser_client_added_ms_p50={p50('client_added_ms'):.0f}")
        print(f"RESULT browser_added_ms_p50={p50('added_ms'):.0f}")
        print(f"RESULT browser_voice_to_voice_ms_p50={p50('page_v2v_ms'):.0f}")
    print(f"RESULT page_weight_kb={sum(weights.values()) / 1024:.1f}")


def table(rows: list[dict], args) -> None:
    p50 = lambda key: pct([r[key] for r in rows], 0.5)  # noqa: E731
    print(
        f"{len(rows)} utterances; Whisper tiny.en, SmolLM2-135M (greedy, {args.max_new_tokens} tokens), Piper joe.\n"
        "ms from the PTT release (page) / audio_stream_end (socket), both after the WAV's 0.5 s trailing pad:\n"
        "page = first reply chunk scheduled, socket = first audio_chunk received (the page's Chromium still\n"
        "open), bare = the same with no browser running, v2v = first reply audio\n"
        "starting in the page; mic = press → getUserMedia resolved, 1st = that → first PCM frame sent,\n"
        "flush = release → audio_stream_end sent, sched = first chunk received → scheduled,\n"
        "got = seconds of audio the page sent (of the WAV's);\n"
        "srv p / srv s = the server's own end of speech → first audio sent (Message.timings) for the page's\n"
        "and the socket's turn; client+ = added less the server's difference (the browser's own share)."
    )
    head = f"{'utterance':24} {'page':>6} {'socket':>6} {'added':>6} {'ratio':>5} {'v2v':>6} {'bare':>6} {'srv p':>6}"
    print(
        f"{head} {'srv s':>6} {'client+':>7} {'mic':>4} {'1st':>4} {'flush':>5} {'sched':>5} {'got/wav s':>9} partial"
    )
    for r in rows:
        print(
            f"{r['name'][:24]:24} {r['page_ms']:6.0f} {r['socket_ms']:6.0f} {r['added_ms']:+6.0f} "
            f"{r['page_ms'] / r['socket_ms']:5.2f} {r['page_v2v_ms']:6.0f} {r['bare_ms']:6.0f} "
            f"{r['server_page_ms']:6.0f} {r['server_socket_ms']:6.0f} {r['client_added_ms']:+7.0f} "
            f"{r['capture_ms']:4.0f} {r['first_frame_ms']:4.0f} {r['flush_ms']:5.0f} {r['schedule_ms']:5.0f} "
            f"{r['captured_s']:4.1f}/{r['duration_s']:4.1f} {'p' if r['page_partial'] else '-'}/"
            f"{'s' if r['socket_partial'] else '-'}"
        )
    ratio = statistics.median(r["page_ms"] / r["socket_ms"] for r in rows)
    print(
        f"{'median':24} {p50('page_ms'):6.0f} {p50('socket_ms'):6.0f} {p50('added_ms'):+6.0f} {ratio:5.2f} "
        f"{p50('page_v2v_ms'):6.0f} {p50('bare_ms'):6.0f} {p50('server_page_ms'):6.0f} {p50('server_socket_ms'):6.0f} "
        f"{p50('client_added_ms'):+7.0f} {p50('capture_ms'):4.0f} {p50('first_frame_ms'):4.0f} {p50('flush_ms'):5.0f} "
        f"{p50('schedule_ms'):5.0f}"
    )
    norm = lambda text: " ".join(text.lower().split())  # noqa: E731
    differ = [r for r in rows if norm(r["page_transcript"]) != norm(r["socket_transcript"])]
    print(f"transcripts that differ between page and socket: {len(differ)} of {len(rows)}")
    for r in rows:
        print(f"  {'≠' if r in differ else '='} {r['name'][:28]:28} page:   {r['page_transcript']!r}")
        if r in differ:
            print(f"    {'':28} socket: {r['socket_transcript']!r}")
    statuses = sorted({str(r["status"]) for r in rows})
    print(f"page turn statuses: {statuses}")


if __name__ == "__main__":
    main()
