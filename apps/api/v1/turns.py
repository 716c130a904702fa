"""A text turn over HTTP: POST /api/v1/sessions/<session_id>/turns.

`{"content": "...", "stream": false, "audio": false}` in one of the caller's sessions (another
user's, a deleted one or a malformed id: 404). One-shot: `{message: {...}}`, the saved reply (with
`audio`, its speech as a base64 WAV, when asked). `stream: true`: Server-Sent Events, `delta`
events (`{"text"}`) as the reply is written, then one `message` event carrying the saved reply
(and `audio` when asked), or one `error` event (`{"error": {code, message}}`) when it fails. The
socket's limits and quotas apply (apps/api/turnstream.py): 400, 409 `turn_in_progress`, 429
`rate_limited` with Retry-After. A client that disconnects stops the turn; its reply is saved as
far as it was streamed, marked interrupted.
"""

import base64
import json
from contextlib import aclosing

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.core.validators import RegexValidator
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.utils.encoders import JSONEncoder

from apps.accounts.quotas import quota_take
from apps.api.sse import SSE_KEEPALIVE, sse_event, sse_event_schema, sse_response
from apps.api.turnstream import Delta, TurnRefused, Waiting, turn_open
from apps.api.v1.asyncview import AsyncAPIView
from apps.api.v1.exceptions import error_reply
from apps.api.v1.parsers import StrictJSONParser
from apps.api.v1.serializers import JsonBooleanField, StringField
from apps.characters.selectors import voice_spec_of
from apps.conversations.models import Message
from apps.conversations.reply import EMOTIONS
from apps.conversations.selectors import session_get_for_user
from apps.core.events import queue_and_wait
from apps.realtime import protocol as p

KEEPALIVE_S = 15.0  # a quiet stream sends a comment this often, so proxies keep it open
TTS_WAIT_S = 120.0  # for the reply's speech from a `tts_api` worker
TTS_SAMPLE_RATE = 22050


class LineField(StringField):
    """A user's line: some text that is not all spaces (the schema says so too: minLength 1, pattern \\S),
    refused as the socket refuses it, `empty_message`."""

    def __init__(self, **kwargs):
        super().__init__(min_length=1, trim_whitespace=False, validators=[RegexValidator(r"\S")], **kwargs)

    def run_validation(self, data=serializers.empty):
        if isinstance(data, str) and not data.strip():
            raise serializers.ValidationError("The message is empty.", code=p.ErrorCode.EMPTY_MESSAGE)
        return super().run_validation(data)


class TurnSerializer(serializers.Serializer):
    content = LineField(help_text="What the user says (at most WS_MAX_MESSAGE_CHARS).")
    stream = JsonBooleanField(default=False, help_text="Server-Sent Events instead of one JSON answer.")
    audio = JsonBooleanField(default=False, help_text="Also synthesize the reply: base64 WAV in `audio`.")


class TurnMessageSerializer(serializers.ModelSerializer):
    """A saved message, as the turn's answer gives it."""

    class Meta:
        model = Message
        fields = ["id", "role", "content", "emotion", "status", "timings", "memories_used", "lore_used", "created_at"]
        read_only_fields = fields


ERROR = inline_serializer(
    name="Error",
    fields={
        "error": inline_serializer(
            name="ErrorBody",
            fields={
                "code": serializers.CharField(help_text="Stable; see docs/protocol.md."),
                "message": serializers.CharField(),
                "retry_after": serializers.FloatField(required=False, help_text="Seconds; with `rate_limited`."),
            },
        )
    },
)
REPLY = inline_serializer(
    name="TurnReply",
    fields={
        "message": TurnMessageSerializer(),
        "audio": serializers.CharField(
            required=False, allow_null=True, help_text="With `audio: true`: the reply spoken, a base64 WAV."
        ),
        "audio_error": inline_serializer(
            name="AudioError",
            fields={"code": serializers.CharField(), "message": serializers.CharField()},
            required=False,
        ),
    },
)
STREAM_DOC = (
    'With `stream: true`: `text/event-stream`. `event: delta` / `data: {"text": ...}` for each piece of the '
    'reply, then `event: message` / `data: {"message": {...}}` (the saved reply, with `audio` when asked), '
    'or `event: error` / `data: {"error": {code, message}}` if the turn fails. Comment lines keep a quiet stream open.'
)


class SessionTurnView(AsyncAPIView):
    parser_classes = [StrictJSONParser]

    @extend_schema(
        operation_id="session_turn_create",
        summary="Say something in a session; get the character's reply",
        request=TurnSerializer,
        responses={
            (200, "application/json"): REPLY,
            (200, "text/event-stream"): OpenApiResponse(
                sse_event_schema(["delta", "message", "error"]), description=STREAM_DOC
            ),
            400: OpenApiResponse(ERROR, description="`empty_message`, `message_too_long`, `invalid_field`."),
            401: OpenApiResponse(ERROR, description="`auth_failed`."),
            404: OpenApiResponse(ERROR, description="`unknown_session`: not one of your live sessions."),
            409: OpenApiResponse(ERROR, description="`turn_in_progress`: the session has a turn running."),
            429: OpenApiResponse(
                ERROR,
                description="`rate_limited` (QUOTA_TURNS, QUOTA_TURNS_IN_FLIGHT; "
                "QUOTA_SPEECH_REQUESTS with `audio`), with `retry_after` and Retry-After.",
            ),
            502: OpenApiResponse(ERROR, description="`llm_failed`: the model failed; the reply is saved as failed."),
            504: OpenApiResponse(ERROR, description="`turn_timeout`: no reply within the time limits."),
        },
        examples=[OpenApiExample("A line", value={"content": "What can I see in the sky tonight?"}, request_only=True)],
        tags=["turns"],
    )
    async def post(self, request, session_id: str):
        body = TurnSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        content, stream, audio = (
            body.validated_data["content"],
            body.validated_data["stream"],
            body.validated_data["audio"],
        )
        session = await database_sync_to_async(session_get_for_user)(user=request.user, session_id=session_id)
        if session is None:
            return error_reply(404, p.ErrorCode.UNKNOWN_SESSION, "You have no session with that id.")
        try:
            if audio:  # the speech counts as a REST speech request, refused before the turn starts
                await _speech_quota(request.user)
            live = await turn_open(
                user=request.user,
                session=session,
                content=content,
                shows_text=stream,
                keepalive_s=KEEPALIVE_S if stream else None,
            )
        except TurnRefused as exc:
            return error_reply(exc.status, exc.code, exc.message, retry_after=exc.retry_after)
        character = session.character
        if stream:
            return sse_response(_turn_events(live, character=character if audio else None))
        async with aclosing(live.events()) as events:
            async for event in events:
                finished = event  # Deltas: nobody reads them in a one-shot answer; Finished comes last
        if finished.error is not None:
            return error_reply(finished.status, finished.error.code, finished.error.message)
        answer = {"message": TurnMessageSerializer(finished.message).data}
        if audio:
            answer.update(await reply_audio(message=finished.message, character=character))
        return Response(answer)


async def _speech_quota(user) -> None:
    retry_after = await sync_to_async(quota_take, thread_sensitive=False)(user_id=user.pk, kind="speech")
    if retry_after is not None:
        raise TurnRefused(
            p.ErrorCode.RATE_LIMITED, "Too many speech requests; try again later.", status=429, retry_after=retry_after
        )


async def _turn_events(live, *, character=None):
    """The turn as SSE: deltas, then the saved reply (with its speech when `character` is given) or an error."""
    async with aclosing(live.events()) as events:
        async for event in events:
            if isinstance(event, Delta):
                yield sse_event({"text": event.text}, event="delta")
            elif isinstance(event, Waiting):
                yield SSE_KEEPALIVE
            elif event.error is not None:
                yield sse_event({"error": event.error.model_dump()}, event="error")
            else:
                answer = {"message": TurnMessageSerializer(event.message).data}
                if character is not None:
                    answer.update(await reply_audio(message=event.message, character=character))
                yield sse_event(_jsonable(answer), event="message")


def _jsonable(answer: dict) -> dict:
    """DRF's serializer data holds UUIDs as UUIDs: the JSON renderer's view of them."""
    return json.loads(json.dumps(answer, cls=JSONEncoder))


async def reply_audio(*, message: Message, character) -> dict:
    """`{"audio": base64 WAV}` of the reply in the character's voice (the `tts_api` queue, as POST
    /api/tts), or `{"audio": None, "audio_error": {code, message}}`."""
    if not message.content:
        return {"audio": None}
    spec = await database_sync_to_async(lambda: voice_spec_of(character.voice, character.language))()
    emotion = message.emotion if message.emotion in EMOTIONS else "neutral"
    try:
        answer = await queue_and_wait(
            "workers.tts.tasks.tts_render",
            TTS_WAIT_S,
            text=message.content,
            voice=spec,
            emotion=emotion,
            fmt="wav",
            sample_rate=TTS_SAMPLE_RATE,
        )
    except TimeoutError:
        failed = p.ErrorBody(code=p.ErrorCode.TTS_TIMEOUT, message="No TTS worker answered in time.")
        return {"audio": None, "audio_error": failed.model_dump()}
    if "error" in answer:
        return {"audio": None, "audio_error": answer["error"]}
    return {"audio": base64.b64encode(answer["audio"]).decode()}
