"""OpenAI-compatible endpoints: each character the caller may talk with is a model, its slug the id.

    GET  /v1/models               {"object": "list", "data": [model, ...]}
    GET  /v1/models/<slug>        model
    POST /v1/chat/completions     chat.completion, or `stream: true`: chat.completion.chunk events, then [DONE]

The key is a PersonaTalk API token (`Authorization: Bearer <token>`). A completion is a PersonaTalk
turn (apps/api/turnstream.py): the character's persona, what it remembers of the user and the
session's history are applied here; the client's system messages are kept as extra instructions for
the turn. Which session a call continues:

1. the header `X-PersonaTalk-Session: <session id>` names one of the caller's sessions with that
   character (its saved history is used; the client's copy of it is not read);
2. otherwise the caller's session with the character whose saved messages are the start of the
   client's messages (the greeting may be missing from the client's copy): the one holding the most
   of them, then the latest; messages the client has beyond it are saved into it first;
3. otherwise a new session, holding the client's earlier messages.

The last message is the new turn. Answers carry the session in the `X-PersonaTalk-Session` header
and a `personatalk` object. `max_tokens` / `max_completion_tokens` are honoured up to
LLM_MAX_NEW_TOKENS; `temperature`, `top_p` and other sampling fields are ignored (the character's
settings apply), as are fields we do not know; `n` must be 1.
"""

import math
import time
from contextlib import aclosing

from channels.db import database_sync_to_async
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from apps.api.openai_compat.errors import MODEL_NOT_FOUND, CompatError, error_body
from apps.api.openai_compat.errors import exception_handler as compat_exception_handler
from apps.api.openai_compat.messages import ClientChat, client_chat
from apps.api.sse import SSE_KEEPALIVE, sse_event, sse_event_schema, sse_response
from apps.api.turnstream import Delta, Finished, TurnRefused, Waiting, message_check, turn_open
from apps.api.v1.asyncview import AsyncAPIView
from apps.api.v1.auth import ApiTokenAuthentication
from apps.api.v1.parsers import StrictJSONParser
from apps.api.v1.serializers import JsonBooleanField, JsonIntegerField, JsonNumberField, StringField
from apps.characters.models import Character
from apps.characters.selectors import character_drafts_visible, character_get_for_chat, character_list_published
from apps.conversations.models import Message
from apps.conversations.selectors import session_get_for_user
from apps.conversations.services import session_for_client_history
from apps.realtime import protocol as p

SESSION_HEADER = "X-PersonaTalk-Session"
MAX_BODY_BYTES = 4 << 20  # a long chat re-sent whole fits; more is refused before it is parsed
KEEPALIVE_S = 15.0


def estimate_tokens(text: str) -> int:
    """Tokens of `text` when the engine does not count them: ~4 characters a token (as OpenAIEngine counts)."""
    return math.ceil(len(text) / 4) if text else 0


def model_object(character: Character) -> dict:
    return {
        "id": character.slug,
        "object": "model",
        "created": int(character.created_at.timestamp()),
        "owned_by": "personatalk",
        "name": character.name,
        "description": character.description,
    }


class CompatView(AsyncAPIView):
    parser_classes = [StrictJSONParser]
    authentication_classes = [ApiTokenAuthentication]
    permission_classes = [IsAuthenticated]

    def get_exception_handler(self):
        return compat_exception_handler


def _characters_for(user) -> list[Character]:
    rows = Character.objects.all() if character_drafts_visible(user=user) else character_list_published()
    return list(rows.order_by("name"))


def _character(user, model) -> Character:
    character = character_get_for_chat(name=model, include_unpublished=character_drafts_visible(user=user))
    if character is None:
        raise CompatError(
            404,
            f"The model `{model}` does not exist or you do not have access to it.",
            code=MODEL_NOT_FOUND,
            param="model",
        )
    return character


class ModelsView(CompatView):
    @extend_schema(
        operation_id="openai_models_list",
        summary="The characters you may talk with, as OpenAI models",
        responses={200: OpenApiResponse(OpenApiTypes.OBJECT, description='`{"object": "list", "data": [model]}`')},
        tags=["openai"],
    )
    async def get(self, request):
        rows = await database_sync_to_async(_characters_for)(request.user)
        return Response({"object": "list", "data": [model_object(c) for c in rows]})


class ModelView(CompatView):
    @extend_schema(
        operation_id="openai_model_retrieve",
        summary="One character as an OpenAI model",
        responses={
            200: OpenApiResponse(OpenApiTypes.OBJECT, description="A model object."),
            404: OpenApiResponse(OpenApiTypes.OBJECT, description="`model_not_found`."),
        },
        tags=["openai"],
    )
    async def get(self, request, model: str):
        character = await database_sync_to_async(_character)(request.user, model)
        return Response(model_object(character))


TEXT_PART = {
    "type": "object",
    "properties": {"type": {"type": "string", "enum": ["text"]}, "text": {"type": "string"}},
    "required": ["type", "text"],
}


@extend_schema_field(
    {
        "type": "object",
        "properties": {
            "role": {"type": "string", "enum": ["system", "developer", "user", "assistant", "tool"]},
            "content": {"oneOf": [{"type": "string"}, {"type": "array", "items": TEXT_PART}, {"type": "null"}]},
        },
        "required": ["role", "content"],
    }
)
class ChatMessageField(serializers.JSONField):
    """One of the client's messages: checked by `client_chat`, which names the message at fault."""


class StreamOptions(serializers.Serializer):
    include_usage = JsonBooleanField(required=False, default=False, help_text="A last chunk with the usage.")


class ChatCompletionRequest(serializers.Serializer):
    model = StringField(help_text="A character's slug (GET /v1/models).")
    messages = serializers.ListField(
        child=ChatMessageField(),
        allow_empty=False,
        min_length=1,
        help_text="The conversation; the last is the user's.",
    )
    stream = JsonBooleanField(default=False, allow_null=True)
    max_tokens = JsonIntegerField(min_value=1, required=False, allow_null=True)
    max_completion_tokens = JsonIntegerField(min_value=1, required=False, allow_null=True)
    n = JsonIntegerField(min_value=1, max_value=1, required=False, allow_null=True)
    stream_options = StreamOptions(required=False, allow_null=True)
    temperature = JsonNumberField(required=False, allow_null=True, help_text="Ignored.")


class ChatCompletionsView(CompatView):
    @extend_schema(
        operation_id="openai_chat_completion_create",
        summary="Talk with a character through the OpenAI chat completions API",
        request=ChatCompletionRequest,
        parameters=[
            OpenApiParameter(
                SESSION_HEADER,
                OpenApiTypes.UUID,
                OpenApiParameter.HEADER,
                description="Continue this session of yours (else the session is found from the messages).",
            )
        ],
        responses={
            (200, "application/json"): OpenApiResponse(OpenApiTypes.OBJECT, description="A `chat.completion`."),
            (200, "text/event-stream"): OpenApiResponse(
                sse_event_schema(), description="`stream: true`: `chat.completion.chunk` events, then `data: [DONE]`."
            ),
            400: OpenApiResponse(OpenApiTypes.OBJECT, description="`invalid_request_error`."),
            401: OpenApiResponse(OpenApiTypes.OBJECT, description="`invalid_api_key`."),
            404: OpenApiResponse(OpenApiTypes.OBJECT, description="`model_not_found`, `unknown_session`."),
            409: OpenApiResponse(
                OpenApiTypes.OBJECT, description="`turn_in_progress`: the session has a turn running."
            ),
            429: OpenApiResponse(OpenApiTypes.OBJECT, description="`rate_limit_exceeded`, with Retry-After."),
        },
        tags=["openai"],
    )
    async def post(self, request):
        if _declared_length(request) > MAX_BODY_BYTES:
            raise CompatError(
                413, f"Request bodies are limited to {MAX_BODY_BYTES} bytes.", code=p.ErrorCode.REQUEST_TOO_LARGE
            )
        body = ChatCompletionRequest(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        chat = client_chat(data["messages"])
        try:
            message_check(chat.line)
        except TurnRefused as exc:
            raise CompatError.of(exc, status=exc.status, param="messages") from None
        user = request.user
        character = await database_sync_to_async(_character)(user, data["model"])
        session, missing = await database_sync_to_async(_session_for)(
            user=user, character=character, chat=chat, named=request.headers.get(SESSION_HEADER)
        )
        limit, stream = data.get("max_completion_tokens") or data.get("max_tokens"), bool(data.get("stream"))
        try:
            live = await turn_open(
                user=user,
                session=session,
                content=chat.line,
                shows_text=stream,
                extra_instructions=chat.instructions,
                max_new_tokens=limit,
                history_import=missing,
                keepalive_s=KEEPALIVE_S if stream else None,
            )
        except TurnRefused as exc:
            raise CompatError.of(exc, status=exc.status, retry_after=exc.retry_after) from None
        completion = Completion(
            id=f"chatcmpl-{live.turn_id.replace('-', '')}",
            model=character.slug,
            session_id=str(session.pk),
            chat=chat,
        )
        headers = {SESSION_HEADER: str(session.pk)}
        if stream:
            include_usage = (data.get("stream_options") or {}).get("include_usage", False)
            return sse_response(completion.chunks(live, include_usage=include_usage), headers=headers)
        async with aclosing(live.events()) as events:
            async for event in events:
                finished = event  # the one-shot answer waits for the end (Finished comes last)
        if finished.error is not None:
            raise CompatError(finished.status, finished.error.message, code=finished.error.code)
        return Response(completion.whole(finished.message), headers=headers)


def _declared_length(request) -> int:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0


def _session_for(*, user, character, chat: ClientChat, named: str | None):
    """(session, the client's messages it lacks): named by the header, or found from the history."""
    if named is not None:
        session = session_get_for_user(user=user, session_id=named.strip(), character=character)
        if session is None:
            raise CompatError(
                404,
                f"You have no session {named!r} with {character.slug}.",
                code=p.ErrorCode.UNKNOWN_SESSION,
                param=SESSION_HEADER,
            )
        return session, []
    return session_for_client_history(user=user, character=character, history=chat.history)


class Completion:
    """One completion's answer, whole or as chunks."""

    def __init__(self, *, id: str, model: str, session_id: str, chat: ClientChat):
        self.id, self.model, self.session_id, self.chat = id, model, session_id, chat
        self.created = int(time.time())

    def _head(self, kind: str) -> dict:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model}

    def extension(self, message: Message) -> dict:
        return {
            "session_id": self.session_id,
            "message_id": str(message.pk),
            "status": message.status,
            "emotion": message.emotion,
            "memories_used": message.memories_used,
            "lore_used": message.lore_used,
        }

    def usage(self, message: Message) -> dict:
        """The engine's counts when it gives both, else both estimated from the text the client sent and got."""
        timings = message.timings or {}
        if isinstance(timings.get("prompt_tokens"), int) and isinstance(timings.get("completion_tokens"), int):
            prompt, completion = timings["prompt_tokens"], timings["completion_tokens"]
        else:
            sent = [self.chat.instructions, *(content for _, content in self.chat.history), self.chat.line]
            prompt, completion = sum(estimate_tokens(t) for t in sent), estimate_tokens(message.content)
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    @staticmethod
    def finish_reason(message: Message) -> str:
        return "length" if (message.timings or {}).get("hit_token_limit") else "stop"

    def whole(self, message: Message) -> dict:
        return {
            **self._head("chat.completion"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": message.content, "refusal": None},
                    "logprobs": None,
                    "finish_reason": self.finish_reason(message),
                }
            ],
            "usage": self.usage(message),
            "system_fingerprint": None,
            "personatalk": self.extension(message),
        }

    def _chunk(self, delta: dict, finish_reason: str | None = None, **extra) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return sse_event({**self._head("chat.completion.chunk"), "choices": [choice], **extra})

    async def chunks(self, live, *, include_usage: bool):
        """The turn as chat.completion.chunk events: the role first, the text as it comes, the finish
        reason, the usage (when asked), then [DONE]; a failure is one `error` event instead."""
        yield self._chunk({"role": "assistant", "content": ""})
        async with aclosing(live.events()) as events:
            async for event in events:
                if isinstance(event, Delta):
                    yield self._chunk({"content": event.text})
                elif isinstance(event, Waiting):
                    yield SSE_KEEPALIVE
                elif isinstance(event, Finished) and event.error is not None:
                    yield sse_event({"error": _error(event)})
                    return
                else:
                    message = event.message
                    yield self._chunk({}, self.finish_reason(message), personatalk=self.extension(message))
                    if include_usage:
                        yield sse_event(
                            {**self._head("chat.completion.chunk"), "choices": [], "usage": self.usage(message)}
                        )
        yield sse_event("[DONE]")


def _error(finished: Finished) -> dict:
    return error_body(finished.status, finished.error.message, code=finished.error.code)["error"]
