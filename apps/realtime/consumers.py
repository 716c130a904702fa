"""The conversation socket at /ws (protocol: apps/realtime/protocol.py, docs/protocol.md)."""

import asyncio
import functools
import logging
import time
import uuid
from urllib.parse import urlsplit

from asgiref.sync import sync_to_async
from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

from apps.conversations.cancel import turn_cancel
from apps.core import metrics
from apps.core.dbasync import db_async
from apps.core.logcontext import log_context_set
from apps.realtime import protocol as p
from apps.realtime import services
from apps.realtime.access import AccessMixin, access_check_every
from apps.realtime.frames import frame_parse
from apps.realtime.limits import REFUSED, QuotaMixin
from apps.realtime.speculation import SpeculationMixin
from apps.realtime.state import ClientError, Turn
from apps.realtime.voice import VoiceMixin

log = logging.getLogger(__name__)

# Close codes counted by name; any other a client sends counts as "other" (a bounded label).
_CLOSE_CODES = {1000, 1001, 1005, 1006, 1011, 1012, *p.CloseCode.DESCRIPTIONS}


class ConversationConsumer(AccessMixin, QuotaMixin, SpeculationMixin, VoiceMixin, AsyncJsonWebsocketConsumer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.conversation: services.Conversation | None = None
        self.user = None
        self.text_deltas = False
        self.token_group: str | None = None
        self.access_groups: list[str] = []  # the user's, and the login session's for a cookie socket
        self.token_id: int | None = None
        self.session_key: str | None = None
        self.access_checked_at = 0.0
        self.ended = False  # access ended or replaced: closing, later frames are dropped
        self.turn: Turn | None = None
        self.counted_open = False  # in the open-sockets gauge
        self.handlers = {
            "connect": self.on_connect,
            "message": self.on_message,
            "switch_character": self.on_switch_character,
            "clear_history": self.on_clear_history,
            "regenerate": self.on_regenerate,
            "stop": self.on_stop,
            "ping": self.on_ping,
            "memories_list": self.on_memories_list,
            "memory_delete": self.on_memory_delete,
            **self.voice_handlers(),
        }

    # --- socket lifecycle --------------------------------------------------------------------

    async def connect(self):
        metrics.SOCKET_CONNECTS.inc()
        metrics.SOCKETS_OPEN.inc()
        self.counted_open = True
        await self.accept()  # authentication happens in the first frame
        await self.quota_open()  # the per-address cap, the deadline to authenticate

    async def disconnect(self, code):
        if self.counted_open:
            self.counted_open = False
            metrics.SOCKETS_OPEN.dec()
            metrics.SOCKET_CLOSES.labels(code=str(code) if code in _CLOSE_CODES else "other").inc()
        self.call = None  # a call's frames still waiting for the VAD are not heard
        await self.quota_close()
        await self.end_turn(cancel=True, notify=False)
        for group in filter(None, [self.token_group, *self.access_groups]):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def dispatch(self, message):
        """Channels' dispatch, guarded: a failing channel-layer event handler must not end the socket.

        (Unguarded, the exception ends the consumer and the server closes the socket with 1011.)
        Log lines from here on carry the socket's session and the turn the message is about.
        """
        session = self.conversation.session.pk if self.conversation is not None else None
        log_context_set(turn_id=message.get("turn_id") or (self.turn.id if self.turn else None), session_id=session)
        try:
            handler = getattr(self, get_handler_name(message), None)
            if handler is None:
                raise ValueError(f"No handler for message type {message['type']}")
            # As channels' AsyncConsumer.dispatch, less its `aclose_old_connections()` (channels 4.2+): a
            # trip to the one thread-sensitive sync thread for every message, a microphone's 50 frames a
            # second and every text delta included. Under 500 sockets with 20 calls those trips were
            # Daphne's largest cost (15% of its time) and the turns' database work queued behind them.
            # This consumer touches the database only through db_async (channels' database_sync_to_async),
            # which closes stale connections itself, in its thread, before and after.
            await handler(message)
        except StopConsumer:
            raise
        except Exception:
            kind = message.get("type", "")
            if kind == "websocket.disconnect":
                log.exception("socket %s: failed while disconnecting", self.channel_name)
                raise StopConsumer() from None
            if kind == "websocket.connect":
                log.exception("socket %s: failed while opening", self.channel_name)
                await self.close()
                return
            turn_id = message.get("turn_id")
            await self.internal_error(f"event {kind}", turn_id=turn_id)
            await self.fail_turn(turn_id)

    async def receive(self, text_data=None, bytes_data=None):
        if self.ended:
            return
        kind = "binary"
        try:
            if bytes_data is not None:
                if self.conversation is None:
                    raise ClientError(p.ErrorCode.NOT_CONNECTED, "Send a `connect` frame first.")
                if await self.access_still_live(every_s=access_check_every("binary")):
                    await self.on_binary(bytes_data)
            else:
                kind = "text"
                frame = frame_parse(text_data, connected=self.conversation is not None)
                kind = frame.type
                if await self.access_still_live(every_s=access_check_every(kind)):
                    await self.handlers[kind](frame)
        except ClientError as exc:
            await self.client_error(exc)
        except Exception:
            await self.internal_error(f"frame {kind}")

    async def client_error(self, exc: ClientError) -> None:
        """Tell the client what it got wrong (and close the socket, where that ends it)."""
        await self.send_frame(p.Error(code=exc.code, message=exc.message, retry_after=exc.retry_after))
        if exc.close_code:
            await self.close(code=exc.close_code)

    async def internal_error(self, where: str, *, turn_id: str | None = None) -> None:
        """Log the exception being handled with a reference, and send the client `internal_error` with it."""
        ref = uuid.uuid4().hex[:12]
        turn_id = turn_id or (self.turn.id if self.turn is not None else None)
        log.exception("internal error %s on %s (turn %s, socket %s)", ref, where, turn_id, self.channel_name)
        try:
            await self.send_frame(
                p.Error(
                    code=p.ErrorCode.INTERNAL_ERROR,
                    message=f"Something went wrong on our side (reference {ref}); the socket is still open.",
                )
            )
        except Exception as exc:  # the socket is gone: nothing left to tell
            log.warning("internal error %s: could not tell the client (%r)", ref, exc)

    async def fail_turn(self, turn_id: str | None) -> None:
        """End the turn an internal error broke (if it is the one in flight) as failed."""
        turn = self.turn
        if turn is None or turn_id is None or turn.id != turn_id:
            return
        try:
            await self.end_turn(cancel=True, notify=False)
            await self.finish_turn(turn, status="failed")
        except Exception:
            log.exception("turn %s: could not end the turn after an internal error", turn_id)

    async def send_frame(self, frame: p.Frame) -> None:
        if isinstance(frame, p.Error):
            metrics.SOCKET_ERROR_FRAMES.labels(code=frame.code).inc()
        await self.send_json(frame.model_dump())

    # --- client frames -----------------------------------------------------------------------

    async def on_connect(self, frame: p.Connect):
        if self.conversation is not None:
            raise ClientError(p.ErrorCode.ALREADY_CONNECTED, "Already connected; use `switch_character`.")
        user, token = await self.authenticate(frame)
        conversation = await self.open_conversation(user, frame.character_name, session_id=frame.session_id)
        await self.quota_slot("user", user.pk)  # open sockets per user, token and cookie alike
        if token is not None:
            await self.claim_token(token.pk)
        if not await self.join_access_groups(user, token):
            return
        self.user, self.conversation, self.text_deltas = user, conversation, frame.text_deltas
        self.output_rate = frame.output_sample_rate
        await self.send_frame(p.Connected(**self.character_fields("Connected to")))

    async def open_conversation(
        self, user, character_name: str, *, session_id: str | None = None
    ) -> services.Conversation:
        conversation = await db_async(services.conversation_open)(
            user=user, character_name=character_name, session_id=session_id
        )
        if conversation is None:
            raise ClientError(p.ErrorCode.UNKNOWN_CHARACTER, f"No character named {character_name!r}.")
        return conversation

    def character_fields(self, fallback: str) -> dict:
        """Fields of `connected` / `character_switched`: the character and its greeting."""
        c = self.conversation.character
        return {
            "character": c.slug,
            "character_display_name": c.name,
            "message": c.greeting or f"{fallback} {c.name}.",
            "session_id": str(self.conversation.session.pk),
        }

    async def authenticate(self, frame: p.Connect):
        if frame.api_token:
            user, token = await db_async(services.socket_token_user)(key=frame.api_token)
            if user is None:
                raise ClientError(p.ErrorCode.AUTH_FAILED, "Unknown or revoked API token.", p.CloseCode.AUTH_FAILED)
            return user, token
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            raise ClientError(p.ErrorCode.AUTH_FAILED, "Give `api_token` or log in first.", p.CloseCode.AUTH_FAILED)
        if not self.origin_allowed():
            raise ClientError(
                p.ErrorCode.ORIGIN_NOT_ALLOWED,
                "Cookie-authenticated sockets must come from this site.",
                p.CloseCode.ORIGIN_NOT_ALLOWED,
            )
        return user, None

    def origin_allowed(self) -> bool:
        """Same-origin (Origin host equals Host) or listed in WS_ALLOWED_ORIGINS."""
        headers = dict(self.scope.get("headers", []))
        origin = headers.get(b"origin", b"").decode("latin-1")
        if not origin:
            return False  # a cookie socket without Origin is not a browser we can vouch for
        host = headers.get(b"host", b"").decode("latin-1")
        return origin in settings.WS_ALLOWED_ORIGINS or urlsplit(origin).netloc == host

    async def on_message(self, frame: p.Message):
        content = frame.content.strip()
        if not content:
            return await self.turn_refused(p.ErrorCode.EMPTY_MESSAGE, "The message is empty.")
        if len(content) > settings.WS_MAX_MESSAGE_CHARS:
            return await self.turn_refused(
                p.ErrorCode.MESSAGE_TOO_LONG, f"Messages are limited to {settings.WS_MAX_MESSAGE_CHARS} characters."
            )
        if self.turn is not None:
            return await self.turn_refused(p.ErrorCode.TURN_IN_PROGRESS, "Wait for `turn_end` before the next message.")
        await self.typed_turn(services.text_turn_submit, content=content)

    async def on_regenerate(self, frame: p.Regenerate):
        if self.turn is not None:
            return await self.turn_refused(p.ErrorCode.TURN_IN_PROGRESS, "Wait for `turn_end` (or send `stop`) first.")
        await self.typed_turn(services.text_turn_regenerate)

    async def turn_refused(self, code: str, message: str) -> None:
        """A typed turn refused before it reaches `typed_turn`: access is re-checked first, as for any
        other frame (a socket whose access has ended is closed, not told what was wrong with its frame)."""
        if await self.access_still_live(every_s=0.0):
            raise ClientError(code, message)

    async def typed_turn(self, submit, **arguments) -> None:
        """A typed turn: the socket's access re-checked, one of the user's turns taken and `submit` (which
        saves and queues the turn, given `arguments`) called, in one trip to the database thread; then
        the turn begins and the client hears `thinking`. Nothing when access has ended (the socket is
        closing); ClientError `rate_limited` past the quota."""
        session = self.conversation.session
        submit = functools.partial(
            submit, session=session, reply_channel=self.channel_name, text_deltas=self.text_deltas, **arguments
        )
        outcome = await db_async(services.turn_admit)(
            user_id=self.user.pk, token_id=self.token_id, session_key=self.session_key, quota="turn", submit=submit
        )
        self.access_checked_at = time.monotonic()
        if isinstance(outcome, services.Refused):
            if outcome.access_ended is None:
                raise ClientError(p.ErrorCode.RATE_LIMITED, REFUSED["turn"], retry_after=outcome.retry_after)
            return await self.end_access(outcome.access_ended)
        self.begin_turn(Turn(outcome, session.pk))
        await self.send_frame(p.Thinking())

    async def on_stop(self, frame: p.Stop):
        await self.speculation_drop(restart=False)  # nothing of a reply started on a partial plays
        if self.turn is None and (self.playing is None or time.time() >= self.playing.playback_end):
            raise ClientError(p.ErrorCode.NO_TURN, "Nothing to stop: no turn is in flight.")
        await self.barge_in()

    async def on_switch_character(self, frame: p.SwitchCharacter):
        conversation = await self.open_conversation(self.user, frame.character_name)
        await self.end_turn(cancel=True)
        self.conversation = conversation
        await self.send_frame(p.CharacterSwitched(**self.character_fields("Now talking with")))

    async def on_clear_history(self, frame: p.ClearHistory):
        await self.end_turn(cancel=True)
        self.conversation = await db_async(services.conversation_open)(
            user=self.user, character_name=self.conversation.character.slug, new_session=True
        )
        await self.send_frame(p.HistoryCleared(session_id=str(self.conversation.session.pk)))

    async def on_ping(self, frame: p.Ping):
        await self.send_frame(p.Pong())

    async def on_memories_list(self, frame: p.MemoriesList):
        owner = {"user_id": self.user.pk, "character_id": self.conversation.character.pk, "limit": frame.limit}
        if frame.query.strip():  # by meaning: the embed queue has the model
            await self.quota_take("memory_search")
            await sync_to_async(services.memories_search_request, thread_sensitive=False)(
                query=frame.query.strip(), reply_channel=self.channel_name, request_id="", **owner
            )
            return
        items = await db_async(services.memories_list)(**owner)
        await self.send_frame(p.Memories(items=items))

    async def memory_results(self, message):
        """A search's answer from the embed queue."""
        event = p.MemoryResults.model_validate(message)
        if event.error is not None:
            await self.send_frame(p.Error(code=event.error.code, message=event.error.message))
        else:
            await self.send_frame(p.Memories(items=event.items or []))

    async def on_memory_delete(self, frame: p.MemoryDelete):
        await db_async(services.memory_forget)(user_id=self.user.pk, memory_id=frame.memory_id)
        await self.send_frame(p.MemoryDeleted(memory_id=frame.memory_id))

    # --- turns -------------------------------------------------------------------------------

    def begin_turn(self, turn: Turn) -> None:
        self.turn = turn
        log_context_set(turn_id=turn.id, session_id=turn.session_id)  # the watchdog's lines too
        turn.watchdog = asyncio.create_task(self.guarded(self.watch_turn(turn), "turn watchdog", turn_id=turn.id))

    async def guarded(self, coro, where: str, *, turn_id: str | None = None) -> None:
        """Run a background task of this socket: an exception becomes `internal_error`, as in a handler."""
        try:
            await coro
        except Exception:
            await self.internal_error(where, turn_id=turn_id)
            await self.fail_turn(turn_id)

    async def finish_turn(self, turn: Turn, *, status: str) -> None:
        """Send `turn_end` and go back to waiting (in a call, tell the client we listen again)."""
        if self.turn is turn:
            self.turn = None
        if turn.watchdog:
            turn.watchdog.cancel()
        await self.send_frame(p.TurnEnd(status=status, message_id=turn.id))
        if self.call is not None:
            await self.send_frame(p.VoiceCallListening())

    async def end_turn(self, *, cancel: bool, notify: bool = True) -> None:
        """Stop the turn in flight (if any); the client gets its `turn_end` as interrupted.

        The cut-off reply is saved here, before `turn_end`, so a `regenerate` or `message` sent on
        seeing it finds it (the job notices the stop a moment later, and keeps this row: replies
        are saved once per turn id). A text reply is saved as far as it was sent to the client, a
        spoken one with only the units whose speech had started.
        """
        await self.speculation_drop(restart=False)
        turn = self.turn
        if turn is None:
            return
        self.turn = None
        if turn.watchdog:
            turn.watchdog.cancel()
        if cancel:
            await db_async(turn_cancel)(turn_id=turn.id)
        if turn.voice:
            await db_async(services.turn_mark_interrupted)(turn=turn, now=time.time())
        else:
            await db_async(services.text_turn_mark_interrupted)(turn=turn)
        if notify:
            await self.finish_turn(turn, status="interrupted")

    async def watch_turn(self, turn: Turn) -> None:
        timeout = settings.TURN_IDLE_TIMEOUT_S
        while self.turn is turn:
            remaining = turn.last_event + timeout - time.monotonic()
            if remaining > 0:
                await asyncio.sleep(remaining)
                continue
            log.warning("turn %s: no event from the worker for %.0f s", turn.id, timeout)
            self.turn = None
            await db_async(turn_cancel)(turn_id=turn.id)
            await db_async(services.turn_mark_failed)(
                turn_id=turn.id, session_id=turn.session_id, reason="turn_timeout"
            )
            await self.send_frame(p.Error(code=p.ErrorCode.TURN_TIMEOUT, message="The reply did not arrive in time."))
            await self.finish_turn(turn, status="failed")

    # --- channel-layer events ----------------------------------------------------------------

    async def turn_frames(self, message):
        """Frames a worker produced for a turn; stale turns (interrupted) are dropped."""
        event = p.TurnFrames.model_validate(message)
        if self.speculation_hold(event.turn_id, message):
            return
        turn = self.turn
        if turn is None or event.turn_id != turn.id:
            return
        turn.last_event = time.monotonic()
        if event.units is not None:
            turn.units_total = event.units
        for frame in event.frames:
            if isinstance(frame, p.TurnEnd):
                await self.finish_turn(turn, status=frame.status)
                return
            if isinstance(frame, p.Error):
                turn.failed = True
            await self.send_frame(frame)
            turn.sent(frame)
        if turn.voice:
            await self.maybe_finish_voice_turn(turn)
