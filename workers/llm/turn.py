"""One text turn on the LLM worker: prompt → streamed reply → socket frames → saved message."""

import logging
import time
from dataclasses import dataclass, field

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings

from apps.conversations.models import Message
from apps.conversations.selectors import session_get_for_turn, session_history
from apps.conversations.services import turn_finish, turn_timings_merge
from apps.memory.selectors import memories_recall
from workers.cancel import turn_is_cancelled, turn_stop_ms
from workers.dispatch import enqueue
from workers.embed.tasks import memory_extract
from workers.events import channel_send
from workers.llm.engines import EngineError, get_engine
from workers.llm.prompt import build_messages, memory_notes
from workers.llm.reply import ReplyStream, Sentence, TextDelta
from workers.tts.tasks import tts_speak

log = logging.getLogger(__name__)


@dataclass
class FrameBatcher:
    """Collects protocol frames for one turn and sends them in batches through the channel layer.

    The first text goes out at once (time to first token is what people feel); later deltas are
    merged and flushed every `flush_ms`; sentence and control frames flush immediately.
    """

    channel: str
    turn_id: str
    flush_ms: int
    frames: list[dict] = field(default_factory=list)
    last_flush: float = 0.0
    sent_text: bool = False

    def delta(self, text: str) -> None:
        if self.frames and self.frames[-1]["type"] == "text_delta":
            self.frames[-1]["content"] += text
        else:
            self.frames.append({"type": "text_delta", "content": text})
        if not self.sent_text or (time.monotonic() - self.last_flush) * 1000 >= self.flush_ms:
            self.sent_text = True
            self.flush()

    def frame(self, frame: dict) -> None:
        self.frames.append(frame)
        self.flush()

    def flush(self) -> None:
        if self.frames:
            frames, self.frames = self.frames, []
            channel_send(self.channel, {"type": "turn.frames", "turn_id": self.turn_id, "frames": frames})
        self.last_flush = time.monotonic()


def text_turn_run(
    *,
    turn_id: str,
    session_id: str,
    reply_channel: str,
    text_deltas: bool,
    submitted_at: float,
    speak: dict | None = None,
    speech_end_at: float | None = None,
) -> None:
    """Write the character's reply to the session's last user message and stream it to the socket.

    With `speak` (voice, sample rate) each completed unit is queued for TTS as soon as it is
    written, and the socket ends the turn once the last unit has played; otherwise sentences go
    out as `response` frames and this job ends the turn. Idempotent: a turn whose reply is saved
    is not written again.
    """
    started = time.time()
    out = FrameBatcher(channel=reply_channel, turn_id=turn_id, flush_ms=settings.DELTA_FLUSH_MS)
    session = session_get_for_turn(session_id=session_id)
    if session is None:  # deleted while queued: nothing to answer
        out.frame({"type": "turn_end", "status": "failed", "message_id": None})
        return
    history = session_history(session_id=session_id)
    if any(str(m.pk) == turn_id for m in history):  # already answered (a redelivered job)
        return
    timings = {"queue_ms": round((started - submitted_at) * 1000, 1)}
    status, error, memories_used = Message.Status.COMPLETE, None, []
    reply = ReplyStream(first_clause_min_words=settings.FIRST_CLAUSE_MIN_WORDS if speak else 0)
    speaker = _Speaker(turn_id, reply_channel, speak, timings, speech_end_at) if speak else None
    engine = get_engine()
    out.frame({"type": "llm_start"})
    t0 = time.monotonic()
    try:
        character = session.character
        said = next((m.content for m in reversed(history) if m.role == Message.Role.USER), "")
        recalled, recall_timings = (
            memories_recall(user_id=session.user_id, character_id=session.character_id, query=said)
            if said
            else ([], {})
        )
        timings.update(recall_timings)
        notes, memories_used = memory_notes(recalled, engine=engine, budget_tokens=settings.MEMORY_PROMPT_TOKENS)
        messages = build_messages(
            persona=character.persona,
            character_name=character.name,
            example_dialogue=character.example_dialogue,
            history=[(m.role, m.content) for m in history if m.status != Message.Status.FAILED and m.content],
            engine=engine,
            budget_tokens=settings.LLM_PROMPT_TOKENS,
            memory_notes=notes,
        )
        timings["prompt_ms"] = round((time.monotonic() - t0) * 1000, 1)
        deadline = started + settings.LLM_SOFT_TIME_LIMIT_S
        for piece in engine.stream(messages, should_stop=lambda: _should_stop(turn_id, deadline)):
            if "first_token_ms" not in timings:
                timings["first_token_ms"] = round((time.monotonic() - t0) * 1000, 1)
                if speech_end_at:
                    timings["first_token_at_ms"] = round((time.time() - speech_end_at) * 1000, 1)
            _emit(out, reply.feed(piece), text_deltas, speaker)
        _emit(out, reply.finish(), text_deltas, speaker)
        stop_ms = turn_stop_ms(turn_id=turn_id)
        if stop_ms is not None:
            status = Message.Status.INTERRUPTED
            timings["llm_stop_ms"] = stop_ms  # from the cancellation to this job letting go
    except SoftTimeLimitExceeded:
        status, error = Message.Status.FAILED, "The reply took too long and was stopped."
    except EngineError as exc:
        log.warning("turn %s: engine failed: %s", turn_id, exc)
        status, error = Message.Status.FAILED, f"The model failed to write a reply: {exc}"
    elapsed = time.monotonic() - t0
    timings["llm_ms"] = round(elapsed * 1000, 1)
    message = turn_finish(
        turn_id=turn_id,
        session_id=session_id,
        content=reply.text,
        emotion=reply.emotion,
        status=status,
        timings=timings,
        memories_used=memories_used,
    )
    if settings.MEMORY_EXTRACTION and status != Message.Status.FAILED:
        enqueue(memory_extract, turn_id=turn_id, session_id=session_id)
    if status == Message.Status.INTERRUPTED:  # the socket may have saved the cut-off reply first
        turn_timings_merge(turn_id=turn_id, timings={"llm_stop_ms": timings["llm_stop_ms"]})
    if error:
        out.frame({"type": "error", "code": "llm_failed", "message": error})
    if speaker:  # the socket ends the turn after the last unit has played
        out.frame({"type": "llm_end", "elapsed_time": round(elapsed, 3), "units": speaker.units})
    else:
        out.frame({"type": "llm_end", "elapsed_time": round(elapsed, 3)})
        out.frame({"type": "turn_end", "status": message.status, "message_id": str(message.pk)})


def _should_stop(turn_id: str, deadline: float) -> bool:
    """Checked between tokens. Past the deadline it raises as the soft time limit does: a worker's
    pool process gets that limit as a signal, but the embedded mode's threads only get this check."""
    if time.time() > deadline:
        raise SoftTimeLimitExceeded()
    return turn_is_cancelled(turn_id=turn_id)


class _Speaker:
    """Queues one TTS job per completed unit of a spoken reply, numbered for in-order playback."""

    def __init__(self, turn_id: str, reply_channel: str, speak: dict, timings: dict, speech_end_at: float | None):
        self.turn_id, self.reply_channel, self.speak, self.units = turn_id, reply_channel, speak, 0
        self.timings, self.speech_end_at = timings, speech_end_at

    def say(self, sentence: Sentence) -> None:
        if self.units == 0 and self.speech_end_at:
            self.timings["first_unit_at_ms"] = round((time.time() - self.speech_end_at) * 1000, 1)
        enqueue(
            tts_speak,
            turn_id=self.turn_id,
            seq=self.units,
            text=sentence.text,
            emotion=sentence.emotion,
            voice=self.speak["voice"],
            sample_rate=self.speak["sample_rate"],
            reply_channel=self.reply_channel,
        )
        self.units += 1


def _emit(out: FrameBatcher, events, text_deltas: bool, speaker: _Speaker | None) -> None:
    for event in events:
        if isinstance(event, TextDelta):
            if text_deltas:
                out.delta(event.text)
        elif speaker:
            out.flush()  # deltas so far go out before the unit's audio can
            speaker.say(event)
        else:
            out.frame({"type": "response", "content": event.text, "content_cn": event.text, "emotion": event.emotion})
