"""The conversation socket at /ws (protocol: apps/realtime/protocol.py, docs/protocol.md)."""

import asyncio
import json
import logging
import time
from urllib.parse import urlsplit

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from pydantic import ValidationError

from apps.conversations.cancel import turn_cancel
from apps.realtime import protocol as p
from apps.realtime import services
from apps.realtime.limits import QuotaMixin
from apps.realtime.state import ClientError, Turn
from apps.realtime.voice import VoiceMixin

log = logging.getLogger(__name__)


class ConversationConsumer(QuotaMixin, VoiceMixin, AsyncJsonWebsocketConsumer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.conversation: services.Conversation | None = None
        self.user = None
        self.text_deltas = False
        self.token_group: str | None = None
        self.turn: Turn | None = None
        self.handlers = {
            "connect": self.on_connect,
            "message": self.on_message,
            "switch_character": self.on_switch_character,
            "clear_history": self.on_clear_history,
            "ping": self.on_ping,
            "memories_list": self.on_memories_list,
            "memory_delete": self.on_memory_delete,
            **self.voice_handlers(),
        }

    # --- socket lifecycle --------------------------------------------------------------------

    async def connect(self):
        await self.accept()  # authentication happens in the first frame
        await self.quota_open()  # the per-address cap, the deadline to authenticate

    async def disconnect(self, code):
        await self.quota_close()
        await self.end_turn(cancel=True, notify=False)
        if self.token_group:
            await self.channel_layer.group_discard(self.token_group, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None):
        try:
            if bytes_data is not None:
                if self.conversation is None:
                    raise ClientError(p.ErrorCode.NOT_CONNECTED, "Send a `connect` frame first.")
                await self.on_binary(bytes_data)
            else:
                frame = self.parse(text_data)
                await self.handlers[frame.type](frame)
        except ClientError as exc:
            await self.send_frame(p.Error(code=exc.code, message=exc.message, retry_after=exc.retry_after))
            if exc.close_code:
                await self.close(code=exc.close_code)

    def parse(self, text: str) -> p.Frame:
        if len(text.encode()) > settings.WS_MAX_FRAME_BYTES:
            raise ClientError(
                p.ErrorCode.FRAME_TOO_LARGE, f"Frames are limited to {settings.WS_MAX_FRAME_BYTES} bytes."
            )
        try:
            data = json.loads(text)
        except ValueError:
            raise ClientError(p.ErrorCode.INVALID_JSON, "The frame is not valid JSON.") from None
        if not isinstance(data, dict) or not isinstance(data.get("type"), str):
            raise ClientError(p.ErrorCode.INVALID_FRAME, "A frame is a JSON object with a string `type`.")
        schema = p.CLIENT_FRAMES.get(data["type"])
        if schema is None:
            raise ClientError(p.ErrorCode.UNKNOWN_TYPE, f"Unknown frame type {data['type']!r}.")
        try:
            frame = schema.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(x) for x in first["loc"])
            if first["type"] == "missing":
                raise ClientError(p.ErrorCode.MISSING_FIELD, f"`{data['type']}` needs the field `{where}`.") from None
            raise ClientError(p.ErrorCode.INVALID_FIELD, f"Field `{where}`: {first['msg']}.") from None
        if frame.type != "connect" and self.conversation is None:
            raise ClientError(p.ErrorCode.NOT_CONNECTED, "Send a `connect` frame first.")
        return frame

    async def send_frame(self, frame: p.Frame) -> None:
        await self.send_json(frame.model_dump())

    # --- client frames -----------------------------------------------------------------------

    async def on_connect(self, frame: p.Connect):
        if self.conversation is not None:
            raise ClientError(p.ErrorCode.ALREADY_CONNECTED, "Already connected; use `switch_character`.")
        user, token = await self.authenticate(frame)
        conversation = await self.open_conversation(user, frame.character_name)
        await self.quota_slot("user", user.pk)  # open sockets per user, token and cookie alike
        if token is not None:
            await self.claim_token(token.pk)
        self.user, self.conversation, self.text_deltas = user, conversation, frame.text_deltas
        self.output_rate = frame.output_sample_rate
        await self.send_frame(p.Connected(**self.character_fields("Connected to")))

    async def open_conversation(self, user, character_name: str) -> services.Conversation:
        conversation = await database_sync_to_async(services.conversation_open)(
            user=user, character_name=character_name
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
            user, token = await database_sync_to_async(services.socket_token_user)(key=frame.api_token)
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

    async def claim_token(self, token_id: int) -> None:
        """At most one live socket per token: tell older ones to go, then join the token's group."""
        self.token_group = f"token.{token_id}"
        await self.channel_layer.group_send(self.token_group, {"type": "token.replaced", "by": self.channel_name})
        await self.channel_layer.group_add(self.token_group, self.channel_name)

    async def on_message(self, frame: p.Message):
        content = frame.content.strip()
        if not content:
            raise ClientError(p.ErrorCode.EMPTY_MESSAGE, "The message is empty.")
        if len(content) > settings.WS_MAX_MESSAGE_CHARS:
            raise ClientError(
                p.ErrorCode.MESSAGE_TOO_LONG, f"Messages are limited to {settings.WS_MAX_MESSAGE_CHARS} characters."
            )
        if self.turn is not None:
            raise ClientError(p.ErrorCode.TURN_IN_PROGRESS, "Wait for `turn_end` before the next message.")
        await self.quota_take("turn")
        session = self.conversation.session
        turn_id = await database_sync_to_async(services.text_turn_submit)(
            session=session, content=content, reply_channel=self.channel_name, text_deltas=self.text_deltas
        )
        self.begin_turn(Turn(turn_id, session.pk))
        await self.send_frame(p.Thinking())

    async def on_switch_character(self, frame: p.SwitchCharacter):
        conversation = await self.open_conversation(self.user, frame.character_name)
        await self.end_turn(cancel=True)
        self.conversation = conversation
        await self.send_frame(p.CharacterSwitched(**self.character_fields("Now talking with")))

    async def on_clear_history(self, frame: p.ClearHistory):
        await self.end_turn(cancel=True)
        self.conversation = await database_sync_to_async(services.conversation_open)(
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
        items = await database_sync_to_async(services.memories_list)(**owner)
        await self.send_frame(p.Memories(items=items))

    async def memory_results(self, message):
        """A search's answer from the embed queue."""
        event = p.MemoryResults.model_validate(message)
        if event.error is not None:
            await self.send_frame(p.Error(code=event.error.code, message=event.error.message))
        else:
            await self.send_frame(p.Memories(items=event.items or []))

    async def on_memory_delete(self, frame: p.MemoryDelete):
        await database_sync_to_async(services.memory_forget)(user_id=self.user.pk, memory_id=frame.memory_id)
        await self.send_frame(p.MemoryDeleted(memory_id=frame.memory_id))

    # --- turns -------------------------------------------------------------------------------

    def begin_turn(self, turn: Turn) -> None:
        self.turn = turn
        turn.watchdog = asyncio.create_task(self.watch_turn(turn))

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

        A spoken reply is saved with only the units whose speech had started.
        """
        turn = self.turn
        if turn is None:
            return
        self.turn = None
        if turn.watchdog:
            turn.watchdog.cancel()
        if cancel:
            await database_sync_to_async(turn_cancel)(turn_id=turn.id)
        if turn.voice:
            await database_sync_to_async(services.turn_mark_interrupted)(turn=turn, now=time.time())
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
            await database_sync_to_async(turn_cancel)(turn_id=turn.id)
            await database_sync_to_async(services.turn_mark_failed)(
                turn_id=turn.id, session_id=turn.session_id, reason="turn_timeout"
            )
            await self.send_frame(p.Error(code=p.ErrorCode.TURN_TIMEOUT, message="The reply did not arrive in time."))
            await self.finish_turn(turn, status="failed")

    # --- channel-layer events ----------------------------------------------------------------

    async def turn_frames(self, message):
        """Frames a worker produced for a turn; stale turns (interrupted) are dropped."""
        event = p.TurnFrames.model_validate(message)
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
        if turn.voice:
            await self.maybe_finish_voice_turn(turn)

    async def token_replaced(self, event):
        if event["by"] != self.channel_name:
            await self.end_turn(cancel=True, notify=False)
            await self.send_frame(p.Disconnected(reason="new_connection"))
            await self.close(code=p.CloseCode.REPLACED)
