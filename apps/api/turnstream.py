"""A text turn over HTTP: submitted as a socket submits one, its reply read from a channel of its own.

A socket hears its turns' frames on its own channel; an HTTP request has none, so `turn_open` makes
one (`channel_layer.new_channel()`), submits the turn with it as the reply channel, and
`LiveTurn.events()` reads the turn's frames until its `turn_end`: the reply's text as it is written,
then the saved reply. Both HTTP turn endpoints (REST and OpenAI-compatible) run on this.

The socket's rules hold: the message limits, the turns quota (429), one turn at a time per session
(409 `turn_in_progress`, where a socket allows one per socket) and QUOTA_TURNS_IN_FLIGHT turns per
user, TURN_IDLE_TIMEOUT_S of silence from the worker, and API_TURN_TIMEOUT_S overall (`turn_timeout`,
the reply saved as failed). A request that goes away (the client disconnects: Django cancels the
view, or closes the stream) cancels the turn, and its reply is saved as far as the client was sent
it, marked interrupted, as a socket saves one.
"""

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings

from apps.accounts import quotas
from apps.conversations.cancel import session_turn_claim, session_turn_release, turn_cancel
from apps.conversations.models import ChatSession, Message
from apps.conversations.services import session_history_import, turn_finish, turn_interrupt
from apps.conversations.turns import text_turn_submit
from apps.core.errors import AppError
from apps.realtime import protocol as p

log = logging.getLogger(__name__)

_TICK_S = 5.0  # how often a quiet wait looks at its deadlines and refreshes the user's slot


class TurnRefused(AppError):
    """The turn was not started: `status` is the HTTP status, `retry_after` (s) comes with 429."""

    def __init__(self, code: str, message: str, *, status: int, retry_after: float | None = None):
        super().__init__(code, message)
        self.status, self.retry_after = status, retry_after


@dataclass(frozen=True)
class Delta:
    """New reply text (the emotion tag never shows)."""

    text: str


@dataclass(frozen=True)
class Finished:
    """The turn ended: the saved reply (None if it never was), and `error` when it failed, with the
    HTTP status a one-shot answer gives it (502 the model failed, 504 timed out)."""

    message: Message | None
    error: p.ErrorBody | None = None
    status: int = 200


@dataclass(frozen=True)
class Waiting:
    """Nothing new for `keepalive_s`: a stream may send a keep-alive."""


def _off_loop(fn):
    """The cache is Redis in the scaled mode: keep its round trips off the event loop."""
    return sync_to_async(fn, thread_sensitive=False)


def message_check(content: str) -> str:
    """The user's line, stripped; TurnRefused (400) when it is empty or over WS_MAX_MESSAGE_CHARS, as on the socket."""
    content = content.strip() if isinstance(content, str) else ""
    if not content:
        raise TurnRefused(p.ErrorCode.EMPTY_MESSAGE, "The message is empty.", status=400)
    if len(content) > settings.WS_MAX_MESSAGE_CHARS:
        raise TurnRefused(
            p.ErrorCode.MESSAGE_TOO_LONG,
            f"Messages are limited to {settings.WS_MAX_MESSAGE_CHARS} characters.",
            status=400,
        )
    return content


async def turn_open(
    *,
    user,
    session: ChatSession,
    content: str,
    shows_text: bool,
    extra_instructions: str = "",
    max_new_tokens: int | None = None,
    history_import: Sequence[tuple[str, str]] = (),
    keepalive_s: float | None = None,
) -> "LiveTurn":
    """Start a text turn in `session` (the caller checked it is the user's) and return it, to read.

    `shows_text`: the reply's text goes to the client as it is written (a stream), so a reply cut
    short keeps what was read; otherwise the client sees only the end. `history_import`: messages
    the session lacks, saved before the user's line once the session is held (an OpenAI client's
    history). Raises TurnRefused: 400 for the line, 409 when the session has a turn running, 429
    over a quota (with `retry_after`). The returned turn holds the session and a slot of the user's
    until its `events()` end: a turn never read (its client gone before the stream began) lets them
    go only when the holds lapse (API_TURN_TIMEOUT_S, QUOTA_SOCKET_TTL_S).
    """
    content = message_check(content)
    holder = uuid.uuid4().hex
    hold_s = settings.API_TURN_TIMEOUT_S + _TICK_S
    if not await _off_loop(session_turn_claim)(session_id=session.pk, turn_holder=holder, ttl_s=hold_s):
        raise TurnRefused(
            p.ErrorCode.TURN_IN_PROGRESS, "This session has a turn running; wait for its reply.", status=409
        )
    slot = None
    try:
        retry_after = await _off_loop(quotas.quota_take)(user_id=user.pk, kind="turn")
        if retry_after is not None:
            raise TurnRefused(
                p.ErrorCode.RATE_LIMITED,
                "Too many turns in a short time; wait before the next one.",
                status=429,
                retry_after=retry_after,
            )
        try:
            slot = await _off_loop(quotas.socket_slot_claim)(kind="turn_in_flight", owner=user.pk, holder=holder)
        except quotas.QuotaExceeded:
            raise TurnRefused(
                p.ErrorCode.RATE_LIMITED,
                f"You have {settings.QUOTA_TURNS_IN_FLIGHT} turns running; wait for one to end.",
                status=429,
                retry_after=1.0,
            ) from None
        channel = await get_channel_layer().new_channel()
        turn_id = await database_sync_to_async(_submit)(
            session=session,
            content=content,
            channel=channel,
            extra_instructions=extra_instructions,
            max_new_tokens=max_new_tokens,
            history_import=history_import,
        )
    except BaseException:
        await _release(session_id=session.pk, holder=holder, slot=slot)
        raise
    return LiveTurn(
        turn_id=turn_id,
        session_id=session.pk,
        channel=channel,
        holder=holder,
        slot=slot,
        shows_text=shows_text,
        keepalive_s=keepalive_s,
    )


def _submit(*, session, content, channel, extra_instructions, max_new_tokens, history_import) -> str:
    session_history_import(session=session, messages=history_import)
    return text_turn_submit(
        session=session,
        content=content,
        reply_channel=channel,
        text_deltas=True,
        extra_instructions=extra_instructions,
        max_new_tokens=max_new_tokens,
    )


async def _release(*, session_id, holder: str, slot) -> None:
    """Let the session and the user's slot go; a cache that is down only delays it (both lapse)."""
    try:
        await _off_loop(session_turn_release)(session_id=session_id, turn_holder=holder)
        if slot is not None:
            await _off_loop(quotas.socket_slot_release)(slot=slot)
    except Exception:
        log.warning("turn of session %s: could not release its hold", session_id, exc_info=True)


@dataclass
class LiveTurn:
    """A turn started over HTTP; read it once with `events()`."""

    turn_id: str
    session_id: object
    channel: str
    holder: str
    slot: quotas.SocketSlot | None
    shows_text: bool
    keepalive_s: float | None = None
    shown: list[str] = field(default_factory=list)  # reply text the client was given
    emotion: str | None = None
    finished: bool = False

    async def events(self) -> AsyncIterator[Delta | Finished | Waiting]:
        """Delta for each piece of reply text, then one Finished; Waiting when quiet for `keepalive_s`.

        Leaving early (the client went away; the iterator closed or its task cancelled) cancels the
        turn and saves its reply as far as the client was given it, marked interrupted.
        """
        layer = get_channel_layer()
        now = time.monotonic()
        idle_until, give_up_at = now + settings.TURN_IDLE_TIMEOUT_S, now + settings.API_TURN_TIMEOUT_S
        quiet_since = refreshed_at = now
        receiving: asyncio.Future | None = None
        error: p.ErrorBody | None = None
        try:
            while True:
                if receiving is None:
                    receiving = asyncio.ensure_future(layer.receive(self.channel))
                now = time.monotonic()
                wake = min(idle_until, give_up_at, now + _TICK_S)
                if self.keepalive_s:
                    wake = min(wake, quiet_since + self.keepalive_s)
                done, _ = await asyncio.wait({receiving}, timeout=max(0.0, wake - now))
                now = time.monotonic()
                if not done:
                    if now >= idle_until or now >= give_up_at:
                        yield await self._timed_out()
                        return
                    if self.slot is not None and now - refreshed_at >= settings.QUOTA_SOCKET_TTL_S / 3:
                        await _off_loop(quotas.socket_slot_refresh)(slot=self.slot)
                        refreshed_at = now
                    if self.keepalive_s and now - quiet_since >= self.keepalive_s:
                        quiet_since = now
                        yield Waiting()
                    continue
                message, receiving = receiving.result(), None
                try:
                    event = p.TurnFrames.model_validate(message)
                except ValueError:
                    log.warning("turn %s: unexpected event on its channel: %r", self.turn_id, message.get("type"))
                    continue
                if event.turn_id != self.turn_id:
                    continue
                idle_until, quiet_since = now + settings.TURN_IDLE_TIMEOUT_S, now
                for frame in event.frames:
                    if isinstance(frame, p.TextDelta) and frame.content:
                        if self.shows_text:
                            self.shown.append(frame.content)
                        yield Delta(frame.content)
                    elif isinstance(frame, p.Response):
                        self.emotion = frame.emotion
                    elif isinstance(frame, p.Error):
                        error = p.ErrorBody(code=frame.code, message=frame.message)
                    elif isinstance(frame, p.TurnEnd):
                        self.finished = True
                        saved = await Message.objects.filter(pk=frame.message_id).afirst() if frame.message_id else None
                        if saved is None and error is None:  # the session was deleted while the turn waited
                            gone = p.ErrorBody(code=p.ErrorCode.UNKNOWN_SESSION, message="The session is gone.")
                            yield Finished(message=None, error=gone, status=404)
                        else:
                            yield Finished(message=saved, error=error, status=502 if error else 200)
                        return
        finally:
            if receiving is not None and not receiving.done():
                receiving.cancel()
            if not self.finished:
                self.finished = True
                await self._abandon()
            await _release(session_id=self.session_id, holder=self.holder, slot=self.slot)

    async def _timed_out(self) -> Finished:
        """Past TURN_IDLE_TIMEOUT_S of silence or API_TURN_TIMEOUT_S: stop the job, save the reply as failed."""
        log.warning("turn %s: no reply in time over HTTP", self.turn_id)
        self.finished = True
        await database_sync_to_async(turn_cancel)(turn_id=self.turn_id)
        saved = await database_sync_to_async(turn_finish)(
            turn_id=self.turn_id,
            session_id=self.session_id,
            content="",
            emotion="neutral",
            status=Message.Status.FAILED,
            timings={"error": "turn_timeout"},
        )
        body = p.ErrorBody(code=p.ErrorCode.TURN_TIMEOUT, message="The reply did not arrive in time.")
        return Finished(message=saved, error=body, status=504)

    async def _abandon(self) -> None:
        """The client left mid-turn: stop the job, keep what the client was given, marked interrupted."""
        log.info("turn %s: the HTTP client left; the turn is stopped", self.turn_id)
        try:
            await database_sync_to_async(turn_cancel)(turn_id=self.turn_id)
            await database_sync_to_async(turn_interrupt)(
                turn_id=self.turn_id,
                session_id=self.session_id,
                spoken="".join(self.shown).strip(),
                emotion=self.emotion,
                timings={"client_left": True},
            )
        except Exception:
            log.exception("turn %s: could not save the reply the client left", self.turn_id)
