"""The DRF views of /api/v1/: each parses its input and calls a service or selector.

Only ever the caller's own sessions, messages, memories, jobs and tokens: another user's id reads
as not found (404 with the object's code), the same as an id that never existed. The views that wait
on a worker or read an upload are async Django views (apps/api/v1/async_views.py).
"""

from dataclasses import asdict

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.decorators import api_view, authentication_classes, permission_classes
from rest_framework.exceptions import NotFound
from rest_framework.generics import GenericAPIView, ListAPIView
from rest_framework.permissions import AllowAny
from rest_framework.response import Response

from apps.accounts.selectors import token_get_for_user, tokens_live
from apps.accounts.services import token_create, token_revoke
from apps.api.v1 import serializers as s
from apps.api.v1.pagination import MessageCursorPagination
from apps.characters.selectors import character_get_visible, characters_visible, voices_all
from apps.conversations.selectors import (
    asr_job_get_for_user,
    session_get_for_user,
    session_messages,
    session_search,
    session_summaries,
    session_summary,
    sessions_of,
)
from apps.conversations.services import SessionNotFound, session_create, session_delete, session_rename
from apps.core.errors import AppError
from apps.memory.selectors import memories_list, memory_character_get, memory_get_for_user
from apps.memory.services import MemoryRequestError, memory_delete
from apps.realtime.protocol import ErrorCode

SEARCH_MAX_SESSIONS = 200  # a search's hits are paged from at most this many sessions

SESSION_ID = OpenApiParameter("session_id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="A session's `id`.")
MEMORY_ID = OpenApiParameter("memory_id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="A memory's `id`.")
JOB_ID = OpenApiParameter("job_id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="A job's `id`.")
TOKEN_ID = OpenApiParameter("token_id", OpenApiTypes.INT, OpenApiParameter.PATH, description="A token's `id`.")


def _unknown_character(name: str) -> AppError:
    return AppError(ErrorCode.UNKNOWN_CHARACTER, f"No character named {name!r}.")


def _memory_not_found() -> MemoryRequestError:
    return MemoryRequestError(ErrorCode.MEMORY_NOT_FOUND, "You have no memory with that id.")


# --- characters and voices (public, as the gallery) -----------------------------------------------


@extend_schema(tags=["characters"], summary="Characters you can talk to")
class CharacterList(ListAPIView):
    """Published characters by name; staff who edit characters also see drafts (`is_published` false)."""

    permission_classes = [AllowAny]
    serializer_class = s.CharacterSerializer

    def get_queryset(self):
        return characters_visible(user=self.request.user)


@extend_schema(tags=["characters"], summary="One character", responses=s.CharacterSerializer)
class CharacterDetail(GenericAPIView):
    permission_classes = [AllowAny]
    serializer_class = s.CharacterSerializer

    def get(self, request, name: str):
        character = character_get_visible(user=request.user, slug=name)
        if character is None:
            raise _unknown_character(name)
        return Response(self.get_serializer(character).data)


@extend_schema(tags=["speech"], summary="Voices characters can have")
class VoiceList(ListAPIView):
    permission_classes = [AllowAny]
    serializer_class = s.VoiceSerializer

    def get_queryset(self):
        return voices_all()


# --- sessions and their messages ------------------------------------------------------------------


class SessionList(GenericAPIView):
    serializer_class = s.SessionSerializer

    @extend_schema(
        tags=["sessions"],
        summary="My sessions, or a search of them",
        parameters=[s.SessionListQuerySerializer],
        responses=s.SessionSerializer(many=True),
    )
    def get(self, request):
        """Live sessions, the one with the latest message first. With `q`: the sessions whose title or a
        message contains `q`, the newest match first, each with `match` (at most 200 sessions)."""
        query = s.SessionListQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        text = query.validated_data.get("q", "").strip()
        if not text:
            page = self.paginate_queryset(sessions_of(user=request.user))
            return self.get_paginated_response(self.get_serializer([session_summary(x) for x in page], many=True).data)
        hits = self.paginate_queryset(session_search(user=request.user, query=text, limit=SEARCH_MAX_SESSIONS))
        summaries = session_summaries(user=request.user, session_ids=[hit.id for hit in hits])
        items = [
            {
                **asdict(summaries[hit.id]),
                "match": {"message_id": hit.message_id or None, "snippet": hit.snippet, "at": hit.message_at},
            }
            for hit in hits
            if hit.id in summaries
        ]
        return self.get_paginated_response(self.get_serializer(items, many=True).data)

    @extend_schema(
        tags=["sessions"],
        summary="Start a session",
        request=s.SessionCreateSerializer,
        responses={201: s.SessionSerializer},
    )
    def post(self, request):
        """A new session with the character; its greeting is the first message."""
        data = s.SessionCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        name = data.validated_data["character"]
        character = character_get_visible(user=request.user, slug=name)
        if character is None:
            raise _unknown_character(name)
        session = session_create(user=request.user, character=character)
        summary = session_summaries(user=request.user, session_ids=[session.pk])[str(session.pk)]
        return Response(self.get_serializer(summary).data, status=status.HTTP_201_CREATED)


@extend_schema(tags=["sessions"], parameters=[SESSION_ID])
class SessionDetail(GenericAPIView):
    serializer_class = s.SessionSerializer

    def _summary(self, session_id):
        summary = session_summaries(user=self.request.user, session_ids=[session_id]).get(str(session_id))
        if summary is None:
            raise SessionNotFound()
        return summary

    @extend_schema(summary="One session", responses=s.SessionSerializer)
    def get(self, request, session_id: str):
        return Response(self.get_serializer(self._summary(session_id)).data)

    @extend_schema(summary="Rename a session", request=s.SessionRenameSerializer, responses=s.SessionSerializer)
    def patch(self, request, session_id: str):
        """Change what is given (`title`); what is left out stays."""
        data = s.SessionRenameSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        if "title" in data.validated_data:
            session_rename(user=request.user, session_id=session_id, title=data.validated_data["title"])
        return Response(self.get_serializer(self._summary(session_id)).data)

    @extend_schema(summary="Delete a session", responses={204: None})
    def delete(self, request, session_id: str):
        """Deleted for you: it leaves every list and search (the row is kept, as the web app's delete)."""
        session_delete(user=request.user, session_id=session_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema(tags=["sessions"], summary="A session's messages", parameters=[SESSION_ID])
class SessionMessages(ListAPIView):
    """Oldest first, a page at a time: follow `next` for newer ones (replies set aside by a regenerate
    are left out, as in the chat)."""

    serializer_class = s.MessageSerializer
    pagination_class = MessageCursorPagination

    def get_queryset(self):
        session = session_get_for_user(user=self.request.user, session_id=self.kwargs["session_id"])
        if session is None:
            raise SessionNotFound()
        return session_messages(session=session)


# --- speech-to-text jobs (created by async_views.asr_job_create) ----------------------------------


@extend_schema(
    tags=["speech"],
    summary="A speech-to-text job's status and result",
    parameters=[JOB_ID],
    responses=s.AsrJobSerializer,
)
class AsrJobDetail(GenericAPIView):
    """`queued`, `running`, then `done` (with `text`) or `failed` (with `error`). Poll until it is one of the last two."""

    serializer_class = s.AsrJobSerializer

    def get(self, request, job_id: str):
        job = asr_job_get_for_user(user=request.user, job_id=job_id)
        if job is None:
            raise AppError(ErrorCode.JOB_NOT_FOUND, "You have no speech-to-text job with that id.")
        return Response(self.get_serializer(job).data)


# --- memories (search: async_views.memory_search) -------------------------------------------------


@extend_schema(tags=["memories"], summary="What characters remember of me", parameters=[s.MemoryListQuerySerializer])
class MemoryList(ListAPIView):
    """Newest first; `character` for one character's only."""

    serializer_class = s.MemorySerializer

    def get_queryset(self):
        query = s.MemoryListQuerySerializer(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        character_id = None
        if name := query.validated_data.get("character"):
            character = memory_character_get(user_id=self.request.user.pk, slug=name)
            if character is None:
                raise _unknown_character(name)
            character_id = character.pk
        return memories_list(user_id=self.request.user.pk, character_id=character_id)


@extend_schema(tags=["memories"], parameters=[MEMORY_ID])
class MemoryDetail(GenericAPIView):
    serializer_class = s.MemorySerializer

    @extend_schema(summary="One memory", responses=s.MemorySerializer)
    def get(self, request, memory_id: str):
        memory = memory_get_for_user(user_id=request.user.pk, memory_id=memory_id)
        if memory is None:
            raise _memory_not_found()
        return Response(self.get_serializer(memory).data)

    @extend_schema(summary="Forget a memory", responses={204: None})
    def delete(self, request, memory_id: str):
        """Deleted from the database and the index at once; what it came from is left out of later summaries."""
        memory = memory_get_for_user(user_id=request.user.pk, memory_id=memory_id)
        if memory is None:
            raise _memory_not_found()
        memory_delete(user_id=request.user.pk, memory_id=memory.pk)  # MemoryRequestError if deleted meanwhile
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- my API tokens --------------------------------------------------------------------------------


class TokenList(GenericAPIView):
    serializer_class = s.TokenSerializer

    @extend_schema(tags=["tokens"], summary="My live API tokens", responses=s.TokenSerializer(many=True))
    def get(self, request):
        """Newest first: name, prefix and dates; the key itself is never kept, so never shown again."""
        page = self.paginate_queryset(tokens_live(user=request.user))
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    @extend_schema(
        tags=["tokens"],
        summary="Create an API token",
        request=s.TokenCreateSerializer,
        responses={201: s.TokenCreatedSerializer},
    )
    def post(self, request):
        """The answer holds the key, this once: keep it."""
        data = s.TokenCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        issued = token_create(user=request.user, name=data.validated_data["name"])
        response = Response(s.TokenCreatedSerializer(issued).data, status=status.HTTP_201_CREATED)
        response["Cache-Control"] = "no-store"  # no copy of the key in any cache
        return response


@extend_schema(tags=["tokens"], parameters=[TOKEN_ID])
class TokenDetail(GenericAPIView):
    serializer_class = s.TokenSerializer

    def _token(self, token_id):
        token = token_get_for_user(user=self.request.user, token_id=token_id)
        if token is None:
            raise AppError(ErrorCode.UNKNOWN_TOKEN, "You have no live API token with that id.")
        return token

    @extend_schema(summary="One of my API tokens", responses=s.TokenSerializer)
    def get(self, request, token_id: str):
        return Response(self.get_serializer(self._token(token_id)).data)

    @extend_schema(summary="Revoke an API token", responses={204: None})
    def delete(self, request, token_id: str):
        """It stops working at once, here and on every socket it opened."""
        token_revoke(token=self._token(token_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- the rest of /api/v1/ -------------------------------------------------------------------------


@extend_schema(exclude=True)
@api_view(["GET", "POST", "PUT", "PATCH", "DELETE"])
@authentication_classes([])
@permission_classes([AllowAny])
def not_found(request, *args, **kwargs):
    raise NotFound("No such path under /api/v1/.")
