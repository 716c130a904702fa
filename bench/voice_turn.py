"""Voice turns through the scaled stack vs. the same stages in-process, and the ASR/TTS workers' memory.

Starts PostgreSQL/Redis if needed, a fresh database, Daphne and three Celery workers (asr, llm, tts)
with the real models (Whisper tiny.en, SmolLM2-135M, Piper joe), then plays N recorded or
Piper-made utterances as push-to-talk streams over a real WebSocket. After each turn the same
stages run in this process on the same input: ASR, the LLM up to its first spoken unit, and TTS
of that unit; their sum is the floor the architecture is compared with. Turns whose transcript
came from a partial (the final ASR pass skipped: `asr_from_partial` in the user message's timings)
are reported apart from the others: end of speech → first audio in ms beside its ratio to the floor.
So are turns whose reply started on a partial transcript before the user let go and was kept
(`reply_on_partial` in the reply's timings, REPLY_ON_PARTIAL), those where such a start was dropped
and the reply queued again (`reply_restarts`), and the others.

`--hold-ms` keeps the button down that long after the clip, streaming silence, as people do before
they let go; end of speech is then the end of the clip, not the release (0, the default: the same).

    .venv/bin/python bench/voice_turn.py [--turns 12] [--hold-ms 0]

Quiet box, 2026-12-04, 12 turns, each on a fresh session (`llm_prefill` at session open):
  --hold-ms 0:   voice_to_voice_ms_p50=1105 (transcript 402, first token 541); 4 transcripts from a
                 partial (p50 921), 8 from the final ASR pass (p50 1166); no reply started early.
  --hold-ms 400: voice_to_voice_ms_p50=1195; reply started on a partial and kept: 5 (p50 858),
                 others 7 (p50 1219); 0 restarts. The partial came back 454 ms (p50) after the
                 clip's end: ASR_PARTIAL_PAUSE_MS (200) of quiet, then Whisper's pass (~350 ms on
                 this CPU, a 30 s window whatever the clip), so with a 400 ms hold it is often late.
Then the stages in series on this 2-core CPU were ASR ~350 ms, the LLM to its first spoken unit
(4+ words) ~550 ms with its prompt cached, TTS ~130 ms.

Second session, 2026-12-04, quiet box, 12 turns, --hold-ms 0, one change at a time:
  as above (baseline this run)                     voice_to_voice_ms_p50=970
  + ASR_WINDOW_S 10 (Whisper encodes 10 s, not 30)  1058 (transcript p50 148 ms, was ~400: the
                                                    replies' first units were longer this run)
  + LLM_DECODE_INT8 (26 ms a token, was 63)         703: transcript 126, first token 261, first
                                                    audio p95 871; 4 transcripts from a partial
                                                    (p50 453), 8 from the final pass (p50 757);
                                                    3 replies started on a partial and kept (p50
                                                    132), 2 restarted (p50 698), 7 others (p50 703)
Issue 11's target (p50 <= 760 ms on a fresh session) is met.

Fourth session, 2026-12-04, quiet box, 12 turns, --hold-ms 0, after the KV cache's room-ahead layers:
  voice_to_voice_ms_p50=687 (p95 891; first audio / floor 0.941): transcript 100, first token 251;
  4 transcripts from a partial (p50 594), 8 from the final pass (p50 720); 4 replies started on a
  partial and kept (p50 594), 2 restarted (p50 662), 6 others (p50 720).
"""

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    LOG_DIR,
    TOKEN,
    asr_from_partial,
    pct,
    reply_start,
    scaled_environment,
    worker_rss_mb,
)

QUESTIONS = [
    "What is the brightest star in the night sky?",
    "Can you tell me something about Mars?",
    "Why do stars twinkle at night?",
    "Tell me a fun fact about Saturn.",
]


def utterances() -> list[tuple[str, bytes]]:
    from tests.speech import alsa_clip, audioeval_clip, piper_says

    clips = [(q, piper_says(q)) for q in QUESTIONS]
    clips += [(name, audioeval_clip(name)[0]) for name in ("hello_world", "quick_brown_fox", "counting")]
    clips += [(name, alsa_clip(name)[0]) for name in ("Front_Center", "Rear_Left")]
    return clips


async def client_turn(ws, pcm: bytes, hold_ms: int = 0) -> dict:
    """Push-to-talk: send the utterance, hold `hold_ms` (silence), release; time each stage from the
    end of the utterance (the release when `hold_ms` is 0)."""
    await ws.send(json.dumps({"type": "clear_history"}))
    while json.loads(await ws.recv())["type"] != "history_cleared":
        pass
    await ws.send(json.dumps({"type": "audio_stream_start"}))
    while json.loads(await ws.recv())["type"] != "audio_stream_started":
        pass
    for i in range(0, len(pcm), 3200):  # 100 ms binary PCM frames, paced as a microphone would
        await ws.send(pcm[i : i + 3200])
        await asyncio.sleep(0.1)
    t0 = time.perf_counter()
    for _ in range(hold_ms // 100):  # no frame comes back before the release: nothing to read meanwhile
        await ws.send(bytes(3200))
        await asyncio.sleep(0.1)
    await ws.send(json.dumps({"type": "audio_stream_end"}))
    marks, units = {}, 0
    while True:
        frame = json.loads(await ws.recv())
        now = time.perf_counter() - t0
        kind = frame["type"]
        if kind == "error":
            raise RuntimeError(frame)
        if kind == "asr_end":
            marks["transcript"], marks["text"] = now, frame["text"]
        elif kind == "text_delta":
            marks.setdefault("first_token", now)
        elif kind == "tts_start":
            units += 1
            marks.setdefault("first_unit", frame["text"])
        elif kind == "audio_chunk":
            marks.setdefault("first_audio", now)
            marks["last_audio"] = now
        elif kind == "turn_end":
            marks["turn_end"], marks["units"], marks["message_id"] = now, units, frame.get("message_id")
            return marks


async def barge_in(ws, question: bytes, interruption: bytes) -> tuple[float | None, float | None]:
    """In a call: ask, and once the character's audio starts, talk over it at real time.

    Returns seconds from the onset of the interrupting speech to the `interrupted` frame, and how
    long the LLM job took to stop after the socket cancelled it (recorded on the message).
    """

    async def speak(pcm: bytes):
        for i in range(0, len(pcm), 640):  # 20 ms frames, as a microphone sends them
            await ws.send(pcm[i : i + 640])
            await asyncio.sleep(0.02)

    silence = bytes(16000)  # 0.5 s
    await ws.send(json.dumps({"type": "voice_call_start"}))
    await speak(silence + question + silence + silence)
    while json.loads(await ws.recv())["type"] != "audio_chunk":
        pass
    onset = time.perf_counter()
    talker = asyncio.create_task(speak(interruption + silence + silence))
    elapsed = None  # stays None when the reply was all sent before the interruption was heard
    while True:
        frame = json.loads(await ws.recv())
        if frame["type"] == "interrupted":
            elapsed = time.perf_counter() - onset
        elif frame["type"] == "turn_end":  # the interrupted turn's, or the next one's if it had ended
            stopped = frame["message_id"] if frame["status"] == "interrupted" else None
            break
    await talker
    await ws.send(json.dumps({"type": "voice_call_stop"}))
    while True:  # drain the interrupting turn until the server listens again
        try:
            await asyncio.wait_for(ws.recv(), 8)
        except TimeoutError:
            break
    from asgiref.sync import sync_to_async

    from apps.conversations.models import Message

    if stopped is None:
        return elapsed, None
    await asyncio.sleep(1)  # the worker records its stop after the socket has moved on
    timings = (await sync_to_async(Message.objects.get)(pk=stopped)).timings
    return elapsed, timings.get("llm_stop_ms")


def in_process(engines, character) -> dict:
    """The same stages, one after another, in this process: the floor."""
    from django.conf import settings

    from apps.characters.selectors import voice_spec_of
    from apps.conversations.prompt import build_messages
    from apps.conversations.reply import ReplyStream, Sentence
    from workers.tts.engine import VoiceSpec

    asr, llm, tts, pcm = engines["asr"], engines["llm"], engines["tts"], engines["pcm"]
    t = time.perf_counter()
    transcript = asr.transcribe(pcm).text
    asr_s = time.perf_counter() - t
    history = [("assistant", character.greeting), ("user", transcript)]
    t = time.perf_counter()
    messages = build_messages(
        persona=character.persona,
        character_name=character.name,
        example_dialogue=character.example_dialogue,
        history=history,
        engine=llm,
        budget_tokens=settings.LLM_PROMPT_TOKENS,
    )
    reply, first_unit, units = ReplyStream(first_clause_min_words=settings.FIRST_CLAUSE_MIN_WORDS), None, []
    for piece in llm.stream(messages):
        for event in reply.feed(piece):
            if isinstance(event, Sentence):
                units.append(event.text)
                if first_unit is None:
                    first_unit = (event.text, time.perf_counter() - t)
    units += [e.text for e in reply.finish() if isinstance(e, Sentence)]
    llm_total_s = time.perf_counter() - t
    if first_unit is None:
        first_unit = (units[0], llm_total_s)
    voice = VoiceSpec(**voice_spec_of(character.voice, character.language))
    t = time.perf_counter()
    tts.synthesize(first_unit[0], voice, reply.emotion)
    tts_first_s = time.perf_counter() - t
    t = time.perf_counter()
    tts.synthesize(units[-1], voice, reply.emotion)
    tts_last_s = time.perf_counter() - t
    return {
        "asr": asr_s,
        "llm_first_unit": first_unit[1],
        "tts_first_unit": tts_first_s,
        "llm_total": llm_total_s,
        "tts_last_unit": tts_last_s,
        "first_unit": first_unit[0],
        "transcript": transcript,
    }


async def run(args) -> None:
    import websockets

    from tests import stack

    env = scaled_environment(args.max_new_tokens)
    log_dir = LOG_DIR
    workers = {
        q: stack.start_worker(queues=q, env=env, log_dir=log_dir, name=f"bench-{q}", timeout=300)
        for q in ("asr", "llm", "tts")
    }
    # partial transcripts on a worker of their own, below the others' CPU priority (as in the Procfile)
    workers["asr_partial"] = stack.start_worker(
        queues="asr_partial", env={**env, "WORKER_NICE": "10"}, log_dir=log_dir, name="bench-asr-partial", timeout=300
    )
    daphne, url = stack.start_daphne(env=env, log_dir=log_dir)
    try:
        import django

        django.setup()
        from asgiref.sync import sync_to_async

        from apps.characters.models import Character
        from workers.asr.engine import get_asr_engine
        from workers.llm.engines import get_engine
        from workers.tts.engine import get_tts_engines

        character = await sync_to_async(Character.objects.select_related("voice").get)(slug=args.character)
        engines = {"asr": get_asr_engine(), "llm": get_engine(), "tts": get_tts_engines()}
        clips = utterances()
        e2e, floor = [], []
        async with websockets.connect(url.replace("http", "ws") + "/ws", max_size=None) as ws:
            await ws.send(
                json.dumps(
                    {"type": "connect", "api_token": TOKEN, "character_name": args.character, "text_deltas": True}
                )
            )
            assert json.loads(await ws.recv())["type"] == "connected"
            for i in range(args.warmup + args.turns):
                name, pcm = clips[i % len(clips)]
                client = await client_turn(ws, pcm, args.hold_ms)
                client["partial"] = await sync_to_async(asr_from_partial)(client["message_id"])
                client["on_partial"], client["restarts"] = await sync_to_async(reply_start)(client["message_id"])
                local = in_process({**engines, "pcm": pcm}, character)
                if i >= args.warmup:
                    e2e.append(client)
                    floor.append(local)
                    print(
                        f"  {name[:32]:32} transcript={client['transcript'] * 1000:5.0f} ms  "
                        f"first audio={client['first_audio'] * 1000:5.0f} ms (floor "
                        f"{(local['asr'] + local['llm_first_unit'] + local['tts_first_unit']) * 1000:5.0f})  "
                        f"units={client['units']}  {'partial' if client['partial'] else 'final  '}  "
                        f"reply {'on partial' if client['on_partial'] else 'after    '} restarts={client['restarts']}  "
                        f"first unit={client['first_unit']!r:.40}"
                    )
            barge_ins = [await barge_in(ws, clips[i % len(clips)][1], clips[0][1]) for i in range(args.barge_ins)]
        rss = {q: worker_rss_mb(w.popen.pid) for q, w in workers.items()}
    finally:
        daphne.stop()
        for w in workers.values():
            w.stop()

    ms = lambda xs: f"p50={pct(xs, 0.5) * 1000:6.0f} ms  p95={pct(xs, 0.95) * 1000:6.0f} ms"  # noqa: E731
    print(
        f"turns={len(e2e)} models: Whisper tiny.en int8, SmolLM2-135M (greedy, {args.max_new_tokens} tokens), Piper joe"
    )
    print("end of speech → (at the client)")
    for stage in ("transcript", "first_token", "first_audio", "turn_end"):
        print(f"  {stage:12} {ms([m[stage] for m in e2e])}")
    print("in-process stages on the same inputs")
    for stage in ("asr", "llm_first_unit", "tts_first_unit", "llm_total", "tts_last_unit"):
        print(f"  {stage:15} {ms([f[stage] for f in floor])}")
    first_ratio = [
        m["first_audio"] / (f["asr"] + f["llm_first_unit"] + f["tts_first_unit"])
        for m, f in zip(e2e, floor, strict=True)
    ]
    end_ratio = [
        m["turn_end"] / (f["asr"] + f["llm_total"] + f["tts_last_unit"]) for m, f in zip(e2e, floor, strict=True)
    ]
    long = [m["first_audio"] / m["last_audio"] for m in e2e if m["units"] >= 3]
    print(f"first audio / floor (asr + llm to first unit + tts of it): median {statistics.median(first_ratio):.3f}")
    print(f"turn end / floor (asr + whole llm + tts of last unit):     median {statistics.median(end_ratio):.3f}")
    print(f"first audio / last audio, replies of ≥3 units (n={len(long)})")
    # A transcript from a partial skips the final ASR pass: those turns are a different path, so
    # end of speech → first audio is given for each apart, in ms beside its ratio to the floor.
    print("end of speech → first audio at the client, and its ratio to the floor (median)")
    groups = {"all": [True] * len(e2e), "from partial": [m["partial"] for m in e2e]}
    groups["from final ASR"] = [not m for m in groups["from partial"]]
    for label, chosen in groups.items():
        audio = [m["first_audio"] for m, c in zip(e2e, chosen, strict=True) if c]
        ratio = [r for r, c in zip(first_ratio, chosen, strict=True) if c]
        if audio:
            print(f"  {label:15} n={len(audio):2}  {ms(audio)}  ratio {statistics.median(ratio):.3f}")
        else:
            print(f"  {label:15} n= 0")
    for label, key in (("from partial", "partial"), ("from final ASR", "final")):
        audio = [m["first_audio"] for m, c in zip(e2e, groups[label], strict=True) if c]
        if audio:
            print(f"RESULT voice_to_voice_ms_p50_{key}={pct(audio, 0.5) * 1000:.0f}")
    # Replies started on a partial transcript (REPLY_ON_PARTIAL): kept, dropped and queued again, neither.
    starts = {
        "reply on partial": [m["on_partial"] for m in e2e],
        "restarted": [not m["on_partial"] and m["restarts"] > 0 for m in e2e],
        "others": [not m["on_partial"] and not m["restarts"] for m in e2e],
    }
    print("end of speech → first audio at the client, by how the reply started")
    for (label, chosen), key in zip(starts.items(), ("reply_on_partial", "restarted", "others"), strict=True):
        audio = [m["first_audio"] for m, c in zip(e2e, chosen, strict=True) if c]
        print(f"  {label:17} n={len(audio):2}  {ms(audio) if audio else ''}")
        print(f"RESULT turns_{key}={len(audio)}")
        if audio:
            print(f"RESULT voice_to_voice_ms_p50_{key}={pct(audio, 0.5) * 1000:.0f}")
    print(f"RESULT reply_restarts_total={sum(m['restarts'] for m in e2e)}")
    print(f"RESULT first_audio_ratio={statistics.median(first_ratio):.3f}")
    print(f"RESULT turn_end_ratio={statistics.median(end_ratio):.3f}")
    print(f"RESULT first_to_last_audio={statistics.median(long) if long else float('nan'):.3f}")
    print(f"RESULT voice_to_voice_ms_p50={pct([m['first_audio'] for m in e2e], 0.5) * 1000:.0f}")
    print(f"RESULT asr_worker_rss_mb={rss['asr']:.0f}")
    print(f"RESULT tts_worker_rss_mb={rss['tts']:.0f}")
    finished = sum(1 for b in barge_ins if b[0] is None)
    barge_ins = [b for b in barge_ins if b[0] is not None]
    if finished:
        print(f"barge-in: {finished} replies were all sent before the interruption was heard (not counted)")
    if barge_ins:
        print(
            f"barge-in: onset of the user's speech → `interrupted` at the client, n={len(barge_ins)} "
            f"(includes VAD_MIN_SPEECH_MS of speech the VAD needs first)"
        )
        print(f"RESULT barge_in_ms_p50={pct([b[0] for b in barge_ins], 0.5) * 1000:.0f}")
        stops = [b[1] for b in barge_ins if b[1] is not None]
        print(
            f"cancel → LLM job stopped (timings.llm_stop_ms), n={len(stops)} of {len(barge_ins)} "
            f"(the others had finished writing): {stops}"
        )
        if stops:
            print(f"RESULT llm_stop_ms_p50={pct(stops, 0.5):.0f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--character", default="nova")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--barge-ins", type=int, default=3)
    parser.add_argument("--hold-ms", type=int, default=0, help="silence streamed after each clip before letting go")
    asyncio.run(run(parser.parse_args()))
