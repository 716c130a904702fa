"""A turn, in the domain: the user's message saved and the reply queued; the reply written (prompt,
streamed engine, frames, saved message, follow-up jobs); a voice turn's transcript accepted.

The callers are thin: the `llm` task passes the engine, the memory recall and the sender; the ASR
task and the socket edge pass the sender. Frames and events are protocol classes. Jobs are queued
by name (workers.dispatch), after the commit.
"""

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.cache import cache
from django.db import transaction

from apps.conversations.cancel import (
    session_reply_wanted,
    session_reply_wanted_since,
    turn_cancel_watch,
    turn_confirm,
    turn_confirmed_wait,
    turn_drop,
    turn_stop_ms,
)
from apps.conversations.lore import lore_notes
from apps.conversations.models import ChatSession, Message
from apps.conversations.prompt import build_messages, memory_notes, next_turn_prefix
from apps.conversations.reply import ReplyStream, Sentence, TextDelta
from apps.conversations.selectors import session_get_for_turn, session_history_positioned
from apps.conversations.services import (
    reply_replace,
    turn_end_status,
    turn_finish,
    turn_start,
    turn_stop_note,
    turn_timings_merge,
)
from apps.core.audio import PCM_RATE, wav_bytes
from apps.core.errors import EngineError
from apps.core.metrics import LLM_FIRST_TOKEN, engine_label, stage_observe
from apps.realtime import protocol as p
from workers.dispatch import enqueue

log = logging.getLogger(__name__)

Send = Callable[[str, p.Event], None]  # apps.core.events.channel_send, or a stand-in
Recall = Callable[..., tuple[list, dict]]  # apps.memory.selectors.memories_recall(user_id, character_id, query)

# How long a reply started on a partial transcript waits, written, for the final transcript to confirm
# it before it gives up (it holds its LLM worker meanwhile); the socket then queues a reply anew.
DRAFT_CONFIRM_WAIT_S = 15.0

# Messages read for a prompt: more than the token budget holds, so the budget (and the blocks in
# which old turns are dropped) decides the cut, not this window sliding by one turn.
PROMPT_HISTORY_MESSAGES = 120
# A reply reads its turn's cancellation flag (a cache read, ~0.15 ms of CPU) at most this often; the
# engine asks between tokens. One worker streaming 32 server turns at 25 tokens/s asked ~1,600 times a
# second (the OpenAI stream asks per line): reads took ~0.25 of a core, and at one per 50 ms still 17 %
# of the time its threads held the GIL (py-spy). The socket answers `stop` itself; the job lets go
# at most this much later.
CANCEL_CHECK_S = 0.1
PREFILL_REQUEST_EVERY_S = 2  # a user's opened sessions get one prefill in this many seconds (~0.15 s of CPU each)


# --- queueing a turn ---------------------------------------------------------------------------


def text_turn_submit(
    *,
    session: ChatSession,
    content: str,
    reply_channel: str,
    text_deltas: bool,
    extra_instructions: str = "",
    max_new_tokens: int | None = None,
) -> str:
    """Save the user's message, then queue the reply job once the row is committed. Returns the turn id.

    `extra_instructions` (an OpenAI client's system messages) go into this turn's prompt, in its tail;
    `max_new_tokens` caps the reply below the engine's own limit. Neither is saved.
    """
    options = _reply_options(extra_instructions=extra_instructions, max_new_tokens=max_new_tokens)
    turn_start(session=session, content=content)  # committed on its own (unless a caller's transaction holds it)
    return _reply_queue_on_commit(session=session, reply_channel=reply_channel, text_deltas=text_deltas, **options)


def _reply_options(*, extra_instructions: str, max_new_tokens: int | None) -> dict:
    """The reply job's optional arguments, only those set: a job queued without them runs on a worker
    that predates them."""
    options = {}
    if extra_instructions.strip():
        options["extra_instructions"] = extra_instructions.strip()
    if max_new_tokens is not None:
        options["max_new_tokens"] = max(1, min(int(max_new_tokens), settings.LLM_MAX_NEW_TOKENS))
    return options


def text_turn_regenerate(*, session: ChatSession, reply_channel: str, text_deltas: bool) -> str:
    """Set the session's last reply aside and queue a new one to the same user message (a text turn).

    Raises NothingToRegenerate when there is no reply to replace. Returns the new turn id.
    """
    with transaction.atomic():
        reply_replace(session=session)
        return _reply_queue_on_commit(session=session, reply_channel=reply_channel, text_deltas=text_deltas)


def _reply_queue_on_commit(*, session: ChatSession, reply_channel: str, text_deltas: bool, **options) -> str:
    """Queue the text reply to the session's last user message once the open transaction commits."""
    turn_id = str(uuid.uuid4())
    transaction.on_commit(
        lambda: _reply_enqueue(
            turn_id=turn_id, session=session, reply_channel=reply_channel, text_deltas=text_deltas, **options
        )
    )
    return turn_id


def _reply_enqueue(*, turn_id: str, session: ChatSession, reply_channel: str, text_deltas: bool, **spoken) -> None:
    """Queue the job that writes the reply (`spoken`: speak and speech_end_at for a voice turn, and
    draft for one started on a partial transcript)."""
    session_reply_wanted(session_id=session.pk)  # a prefill-ahead of this session's gives way
    enqueue(
        "workers.llm.tasks.llm_reply",
        turn_id=turn_id,
        session_id=str(session.pk),
        reply_channel=reply_channel,
        text_deltas=text_deltas,
        submitted_at=time.time(),
        **spoken,
    )


def turn_fail(*, send: Send, reply_channel: str, turn_id: str, code: str, message: str) -> None:
    """End a turn that cannot go on: an `error` frame, then `turn_end` as failed."""
    send(
        reply_channel,
        p.TurnFrames(
            turn_id=turn_id, frames=[p.Error(code=code, message=message), p.TurnEnd(status="failed", message_id=None)]
        ),
    )


def transcript_accept(
    *,
    send: Send,
    text: str,
    pcm: bytes,
    timings: dict,
    turn_id: str,
    session,
    reply_channel: str,
    speech_end_at: float,
    speak: dict,
    text_deltas: bool,
) -> None:
    """A voice turn's final transcript: tell the client, save the user's message, queue the reply.

    Called by the ASR job, or by the socket edge when a partial transcript already covered all
    the speech of the utterance.
    """
    send(
        reply_channel,
        p.TurnFrames(turn_id=turn_id, frames=[p.Transcription(text=text, is_partial=False), p.AsrEnd(text=text)]),
    )
    if not text:
        return turn_fail(
            send=send,
            reply_channel=reply_channel,
            turn_id=turn_id,
            code=p.ErrorCode.NO_SPEECH,
            message="No words were heard.",
        )
    _utterance_save(session=session, text=text, pcm=pcm, timings=timings, speech_end_at=speech_end_at)
    send(reply_channel, p.TurnFrames(turn_id=turn_id, frames=[p.Thinking()]))
    voice_reply_queue(
        turn_id=turn_id,
        session=session,
        reply_channel=reply_channel,
        text_deltas=text_deltas,
        speak=speak,
        speech_end_at=speech_end_at,
    )


def _utterance_save(*, session, text: str, pcm: bytes, timings: dict, speech_end_at: float) -> None:
    timings = {**timings, "transcript_at_ms": round((time.time() - speech_end_at) * 1000, 1)}
    turn_start(
        session=session,
        content=text,
        timings=timings,
        audio_wav=wav_bytes(pcm, PCM_RATE) if settings.KEEP_AUDIO else None,
    )


def voice_reply_queue(
    *,
    turn_id: str,
    session,
    reply_channel: str,
    text_deltas: bool,
    speak: dict,
    speech_end_at: float | None = None,
    draft: str | None = None,
) -> None:
    """Queue a spoken reply: to the session's last user message, or with `draft` (a partial transcript
    of what the user is still saying, not saved) to that line, before the user has finished.

    A reply on a draft is only saved once `transcript_keep` confirms it (see `text_turn_run`).
    """
    extra = {"draft": draft} if draft is not None else {}
    _reply_enqueue(
        turn_id=turn_id,
        session=session,
        reply_channel=reply_channel,
        text_deltas=text_deltas,
        speak=speak,
        speech_end_at=speech_end_at,
        **extra,
    )


def transcript_keep(*, session, text: str, pcm: bytes, timings: dict, turn_id: str, speech_end_at: float) -> bool:
    """A voice turn whose reply was started on a partial transcript that the final one confirms: save
    the user's message, then let the reply's job (waiting in `text_turn_run`) save and speak its reply.

    Returns False when the job had already dropped that reply (cancelled, failed, or tired of
    waiting): the user's message is saved all the same and the caller queues a reply anew.
    """
    _utterance_save(session=session, text=text, pcm=pcm, timings=timings, speech_end_at=speech_end_at)
    return turn_confirm(turn_id=turn_id, speech_end_at=speech_end_at)


# --- writing the reply -------------------------------------------------------------------------


@dataclass
class FrameBatcher:
    """Collects protocol frames for one turn and sends them in batches through the channel layer.

    The first text goes out at once (time to first token is what people feel); later deltas are
    merged and flushed every `flush_ms`; sentence and control frames flush immediately. A send that
    fails (channel full, Redis gone, a timeout) means the socket cannot hear this turn: `send_error`
    says why, and nothing more is sent.
    """

    channel: str
    turn_id: str
    flush_ms: int
    send: Send
    frames: list[p.ServerFrame] = field(default_factory=list)
    last_flush: float = 0.0
    sent_text: bool = False
    first_text_at: float | None = None  # monotonic, when the first text was handed to the layer
    send_error: str | None = None

    def delta(self, text: str) -> None:
        if self.frames and isinstance(self.frames[-1], p.TextDelta):
            self.frames[-1].content += text
        else:
            self.frames.append(p.TextDelta(content=text))
        if not self.sent_text or (time.monotonic() - self.last_flush) * 1000 >= self.flush_ms:
            self.flush()
            if not self.sent_text:
                self.sent_text, self.first_text_at = True, time.monotonic()

    def frame(self, *frames: p.ServerFrame, units: int | None = None) -> None:
        """Send `frames` now, after what was waiting, in one message."""
        self.frames.extend(frames)
        self.flush(units=units)

    def flush(self, *, units: int | None = None) -> None:
        frames, self.frames = self.frames, []
        if frames and self.send_error is None:
            try:
                self.send(self.channel, p.TurnFrames(turn_id=self.turn_id, frames=frames, units=units))
            except SoftTimeLimitExceeded:
                raise
            except Exception as exc:  # noqa: BLE001 - whatever the layer raised, the socket is out of reach
                self.send_error = f"{exc.__class__.__name__}: {exc}"[:300]
                log.warning("turn %s: cannot reach the socket, the reply stops: %s", self.turn_id, self.send_error)
        self.last_flush = time.monotonic()


def text_turn_run(
    *,
    turn_id: str,
    session_id: str,
    reply_channel: str,
    text_deltas: bool,
    submitted_at: float,
    engine,
    recall: Recall,
    send: Send,
    speak: dict | None = None,
    speech_end_at: float | None = None,
    draft: str | None = None,
    extra_instructions: str = "",
    max_new_tokens: int | None = None,
) -> None:
    """Write the character's reply to the session's last user message and stream it to the socket.

    With `draft` (a partial transcript of what the user is still saying) the reply answers that line
    instead, read as the user's last message but not saved: the socket holds back its frames, and
    the reply is saved only once the final transcript confirms it (`transcript_keep`, which saves
    the user's message first); dropped, it saves nothing, sends nothing more and queues no memory job.

    With `speak` (voice, sample rate) each completed unit is queued for TTS as soon as it is
    written, and the socket ends the turn once the last unit has played; otherwise sentences go
    out as `response` frames and this job ends the turn. Idempotent: a turn whose reply is saved
    is not written again. A socket that cannot be reached stops the engine; what was written is
    still saved (as failed, with `send_error` in its timings).

    `extra_instructions` go into the prompt's tail (see `build_messages`); `max_new_tokens` caps the
    reply (the engine's own limit otherwise).
    """
    started = time.time()
    out = FrameBatcher(channel=reply_channel, turn_id=turn_id, flush_ms=settings.DELTA_FLUSH_MS, send=send)
    session = session_get_for_turn(session_id=session_id, turn_id=turn_id)
    if session is None:  # deleted while queued: nothing to answer
        out.frame(p.TurnEnd(status="failed", message_id=None))
        return
    if session.reply_saved:  # already answered (a redelivered job), or stopped before it started
        return
    positioned = session_history_positioned(session_id=session_id, limit=PROMPT_HISTORY_MESSAGES)
    history = [m for _, m in positioned]
    next_position = positioned[-1][0] + 1 if positioned else 0
    timings = {"queue_ms": round((started - submitted_at) * 1000, 1)}
    status, error, memories_used, lore_used = Message.Status.COMPLETE, None, [], []
    reply = ReplyStream(first_clause_min_words=settings.FIRST_CLAUSE_MIN_WORDS if speak else 0)
    speaker = _Speaker(turn_id, reply_channel, speak) if speak else None
    first_token_at = llm_end_at = None
    out.frame(p.LlmStart())
    timings["setup_ms"] = round((time.time() - started) * 1000, 1)  # the session's rows, `llm_start` sent
    t0, deadline = time.monotonic(), started + settings.LLM_SOFT_TIME_LIMIT_S
    try:
        character = session.character
        said = draft or next((m.content for m in reversed(history) if m.role == Message.Role.USER), "")
        recalled, recall_timings = (
            recall(user_id=session.user_id, character_id=session.character_id, query=said) if said else ([], {})
        )
        timings.update(recall_timings)
        history, positions = _prompt_history(positioned)
        if draft:  # where the user's message will be once the final transcript confirms it
            history, positions = [*history, (Message.Role.USER, draft)], [*positions, next_position]
        messages, memories_used, lore_used = turn_prompt(
            character=character,
            has_lore=session.has_lore,
            history=history,
            positions=positions,
            recalled=recalled,
            engine=engine,
            extra_instructions=extra_instructions,
        )
        timings["prompt_ms"] = round((time.monotonic() - t0) * 1000, 1)

        with turn_cancel_watch(turn_id=turn_id, every_s=CANCEL_CHECK_S) as cancelled:

            def stop() -> bool:
                # Past the deadline, raise as the soft time limit does: a prefork pool process gets that
                # limit as a signal, but threads (the embedded mode's, a server engine's worker) only get
                # this check between tokens.
                if time.time() > deadline:
                    raise SoftTimeLimitExceeded()
                return out.send_error is not None or cancelled()

            # Keyed by session: the engine may reuse what it computed for this session's last prompt.
            limit = {"max_new_tokens": max_new_tokens} if max_new_tokens else {}
            for piece in engine.stream(
                messages, should_stop=stop, cache_key=engine_cache_key(session), stats=timings, **limit
            ):
                if "first_token_ms" not in timings:
                    first_token_s = time.monotonic() - t0
                    timings["first_token_ms"] = round(first_token_s * 1000, 1)
                    first_token_at = time.time()
                    stage_observe(LLM_FIRST_TOKEN, engine=engine_label(engine), seconds=first_token_s)
                _emit(out, reply.feed(piece), text_deltas, speaker)
        llm_end_at = time.time()  # the engine's last piece: what is still held back is spoken after it
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
        if time.time() > deadline:  # a server silent past the limit: its client's read timed out
            error = "The reply took too long and was stopped."
    elapsed = time.monotonic() - t0
    llm_end_at = llm_end_at or time.time()  # (failed or stopped: when the job let go)
    timings["llm_ms"] = round(elapsed * 1000, 1)
    if out.first_text_at is not None:  # the first visible text sent (a hidden emotion tag, a word held back)
        timings["first_text_ms"] = round((out.first_text_at - t0) * 1000, 1)
    log.info("reply %s in %.0f ms, first token %s ms", status, elapsed * 1000, timings.get("first_token_ms"))
    if out.send_error is not None:  # the user never saw (all of) it: kept, but out of later prompts
        timings["send_error"] = out.send_error
        if status == Message.Status.COMPLETE:
            status = Message.Status.FAILED
    if draft is not None:
        wait_s = max(0.0, min(DRAFT_CONFIRM_WAIT_S, deadline - time.time() - 1))
        if status == Message.Status.FAILED:  # not the user's turn yet: the final transcript gets a new reply
            turn_drop(turn_id=turn_id)
        speech_end_at = turn_confirmed_wait(turn_id=turn_id, timeout_s=wait_s)
        if speech_end_at is None:  # dropped: as if it had never been written
            return
        timings["reply_on_partial"] = True
    if speech_end_at:  # negative for a reply started on a partial transcript before the user finished
        stages = (
            ("first_token_at_ms", first_token_at),
            ("first_unit_at_ms", speaker and speaker.first_at),
            ("llm_end_at_ms", llm_end_at),
        )
        for key, at in stages:
            if at:
                timings[key] = round((at - speech_end_at) * 1000, 1)
    message = turn_finish(
        turn_id=turn_id,
        session_id=session_id,
        content=reply.text,
        emotion=reply.emotion,
        status=status,
        timings=timings,
        memories_used=memories_used,
        lore_used=lore_used,
    )
    if settings.MEMORY_EXTRACTION and status != Message.Status.FAILED:
        enqueue("workers.embed.tasks.memory_extract", turn_id=turn_id, session_id=session_id)
    if message.status != status or status == Message.Status.INTERRUPTED:  # the socket saved the cut-off reply
        stopped = {"llm_stop_ms": timings["llm_stop_ms"]} if "llm_stop_ms" in timings else {}
        turn_stop_note(turn_id=turn_id, emotion=reply.emotion, timings=stopped)
    reachable = out.send_error is None
    # The turn's last frames go in one message (one round trip to Redis, one for the socket to take).
    last = [p.Error(code=p.ErrorCode.LLM_FAILED, message=error)] if error else []
    last.append(p.LlmEnd(elapsed_time=round(elapsed, 3)))
    if speaker:  # the socket ends the turn after the last unit has played
        out.frame(*last, units=speaker.units)
    else:
        out.frame(*last, p.TurnEnd(status=turn_end_status(reply=message), message_id=str(message.pk)))
    if reachable and out.send_error is not None:  # the last frames did not arrive: note it on the saved reply
        turn_timings_merge(turn_id=turn_id, timings={"send_error": out.send_error})
    # Not for a server engine (`caches_prompts` False): its cache is its own, and the next prompt's start
    # built here (~3 ms of CPU) would go nowhere.
    if settings.LLM_PREFILL_AHEAD and getattr(engine, "caches_prompts", True) and not error:
        _prefill_ahead(engine=engine, session=session, turn_id=turn_id, since=submitted_at)


def prompt_prefill_request(*, session: ChatSession) -> None:
    """Have an LLM worker prefill the start of the session's next prompt (system prompt, greeting,
    the history it will keep) once the open transaction commits: a socket opening a session asks
    for it, so the first turn prefills only its line. Only the local engine keeps such a cache.

    At most one per user every PREFILL_REQUEST_EVERY_S: a client clearing its history in a loop
    would otherwise fill the LLM queue with prefills (each ~250 tokens) for free.
    """
    if not (settings.LLM_PREFILL_AHEAD and settings.LLM_BACKEND == "transformers"):
        return
    if cache.add(f"llm-prefill-asked:{session.user_id}", 1, PREFILL_REQUEST_EVERY_S):
        session_id = str(session.pk)
        transaction.on_commit(
            lambda: enqueue("workers.llm.tasks.llm_prefill", session_id=session_id, requested_at=time.time())
        )


def prompt_prefill(*, session_id: str, engine, requested_at: float = 0.0) -> int:
    """Prefill the session's next prompt start on `engine` (the `llm_prefill` job); the tokens computed."""
    session = session_get_for_turn(session_id=session_id)
    if session is None:
        return 0
    return _prefill_ahead(engine=engine, session=session, turn_id=None, since=requested_at or time.time())


def turn_prompt(
    *,
    character,
    history: list,
    positions: list[int],
    recalled: list,
    engine,
    extra_instructions: str = "",
    has_lore: bool = True,
) -> tuple[list[dict], list, list]:
    """A turn's prompt messages from the history it shows and the memories recalled for it, with the
    memories and lorebook entries that made it in (`has_lore` False: the caller knows the character
    has no enabled entry, none are read)."""
    notes, memories_used = memory_notes(
        recalled,
        engine=engine,
        budget_tokens=settings.MEMORY_PROMPT_TOKENS,
        layout=settings.MEMORY_PROMPT_LAYOUT,
        limit=settings.MEMORY_PROMPT_NOTES or None,
    )
    entries = list(character.lorebook_entries.filter(enabled=True)) if has_lore else []  # the layout asks if any
    prompt_layout = _prompt_layout(character, has_lore=bool(entries))
    lore, lore_used = lore_notes(
        entries,
        recent=[content for _, content in history[max(0, len(history) - settings.LOREBOOK_SCAN_MESSAGES) :]],
        character_name=character.name,
        engine=engine,
        budget_tokens=prompt_layout["lore_budget_tokens"],
    )
    messages = build_messages(
        **prompt_layout,
        history=history,
        positions=positions,
        engine=engine,
        memory_notes=notes,
        lore_notes=lore,
        extra_instructions=extra_instructions,
    )
    return messages, memories_used, lore_used


def engine_cache_key(session: ChatSession) -> str:
    """What the engine keeps a session's computed prompt under: "user/session", so a user's new
    session may start from what another of theirs computed (never from another user's)."""
    return f"{session.user_id}/{session.pk}"


def _prompt_layout(character, *, has_lore: bool | None = None) -> dict:
    """The prompt's settings for this character, as build_messages and next_turn_prefix take them.

    The lorebook's share of the budget is set aside only for a character with enabled entries
    (`has_lore`: whether it has any, when the caller has read them; else asked here).
    """
    if has_lore is None:
        has_lore = character.lorebook_entries.filter(enabled=True).exists()
    return dict(
        persona=character.persona,
        character_name=character.name,
        example_dialogue=character.example_dialogue,
        description=character.description if character.description_in_prompt else "",
        personality=character.personality,
        scenario=character.scenario,
        post_history_instructions=character.post_history_instructions,
        lore_budget_tokens=settings.LOREBOOK_TOKEN_BUDGET if has_lore else 0,
        budget_tokens=settings.LLM_PROMPT_TOKENS,
        memory_budget_tokens=settings.MEMORY_PROMPT_TOKENS,
        layout=settings.MEMORY_PROMPT_LAYOUT,
        block_turns=settings.LLM_HISTORY_BLOCK_TURNS,
        new_line_tokens=settings.LLM_NEW_LINE_TOKENS,
    )


def _prompt_history(positioned: list[tuple[int, Message]]) -> tuple[list[tuple[str, str]], list[int]]:
    """(role, content) of the messages a prompt shows (not failed, not empty), and their positions."""
    usable = [(at, m) for at, m in positioned if m.status != Message.Status.FAILED and m.content]
    return [(m.role, m.content) for _, m in usable], [at for at, _ in usable]


def _prefill_ahead(*, engine, session: ChatSession, turn_id: str | None, since: float) -> int:
    """Have the engine compute what the session's next prompt will begin with, now that the reply is
    saved and sent, while the user reads it (recorded on the reply `turn_id` as `prefill_ahead_*`).
    A reply to the session queued after `since` (this job's own queueing) stops it: that job
    prefills the rest. A failure costs the next turn its head start, nothing else. Returns the
    tokens computed."""
    t0 = time.monotonic()
    try:
        positioned = session_history_positioned(session_id=session.pk, limit=PROMPT_HISTORY_MESSAGES)
        history, positions = _prompt_history(positioned)
        messages = next_turn_prefix(
            **_prompt_layout(session.character, has_lore=getattr(session, "has_lore", None)),  # asked if not known
            history=history,
            positions=positions,
            engine=engine,
        )
        tokens = engine.warm(
            messages,
            cache_key=engine_cache_key(session),
            should_stop=lambda: session_reply_wanted_since(session_id=session.pk, since=since),
            # The user's turn opens most prompts' next message (its notes and line; lore, notes in the
            # `system` layout and a client's instructions come as system messages: the cache is cut there).
            then="user",
        )
    except Exception:  # noqa: BLE001 - the soft time limit included: the turn itself is done
        log.warning("session %s: prefilling the next prompt failed", session.pk, exc_info=True)
        return 0
    if tokens and turn_id:
        elapsed = round((time.monotonic() - t0) * 1000, 1)
        turn_timings_merge(turn_id=turn_id, timings={"prefill_ahead_tokens": tokens, "prefill_ahead_ms": elapsed})
    return tokens


class _Speaker:
    """Queues one TTS job per completed unit of a spoken reply, numbered for in-order playback."""

    def __init__(self, turn_id: str, reply_channel: str, speak: dict):
        self.turn_id, self.reply_channel, self.speak, self.units = turn_id, reply_channel, speak, 0
        self.first_at: float | None = None  # wall clock of the first unit

    def say(self, sentence: Sentence) -> None:
        if self.units == 0:
            self.first_at = time.time()
        enqueue(
            "workers.tts.tasks.tts_speak",
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
            if out.send_error is None:  # nobody would hear it
                speaker.say(event)
        else:
            out.frame(p.Response(content=event.text, content_cn=event.text, emotion=event.emotion))
