"""The schema's entries for plain Django views: the async views of /api/v1/ and the old paths.

drf-spectacular documents DRF views only. `documented(view, doc)` routes a plain view (sync or
async) as it is and gives it `doc`, a DRF view class whose methods only carry `extend_schema`:
the generator reads the class, requests never reach it. The old paths (`/characters`,
`/api/voices`, `/api/tts`, `/api/asr`, `/api/memories`) keep their own views and shapes, marked
deprecated in the schema and answered with `Deprecation` and a `Link` to their successor.
"""

import functools
from inspect import iscoroutinefunction

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.views import APIView

from apps.api.v1 import serializers as s

DEPRECATED_AT = "@1796342400"  # 2026-12-04, when /api/v1/ took over (RFC 9745 date)
AUDIO_TYPES = ("audio/wav", "audio/mpeg", "audio/ogg")
UPLOAD_TYPES = ("audio/wav", "audio/flac", "audio/ogg", "audio/mpeg", "audio/webm", "application/octet-stream")


def documented(view, doc: type[APIView], *, successor: str | None = None):
    """`view`, documented in the schema as `doc`; with `successor` (a path), answered as deprecated."""

    def mark(response):
        if successor:
            response["Deprecation"] = DEPRECATED_AT
            response["Link"] = f'<{successor}>; rel="successor-version"'
        return response

    if iscoroutinefunction(view):

        @functools.wraps(view)
        async def wrapper(request, *args, **kwargs):
            return mark(await view(request, *args, **kwargs))

    else:

        @functools.wraps(view)
        def wrapper(request, *args, **kwargs):
            return mark(view(request, *args, **kwargs))

    wrapper.cls, wrapper.initkwargs = doc, {}
    return wrapper


def _doc(name: str, method: str, schema, *, public: bool = False) -> type[APIView]:
    """A DRF view class named `name` that only documents `method` with `schema` (an `extend_schema`)."""

    def handler(self, request, *args, **kwargs):  # pragma: no cover - requests go to the documented view
        raise NotImplementedError

    attrs = {method: schema(handler), "__doc__": "Documentation only: see `documented`."}
    if public:
        attrs.update(permission_classes=[AllowAny], authentication_classes=[])
    return type(name, (APIView,), attrs)


_upload = {
    "multipart/form-data": inline_serializer("AudioUpload", {"audio": serializers.FileField()}),
    **dict.fromkeys(UPLOAD_TYPES, OpenApiTypes.BINARY),
}

# --- /api/v1/ -------------------------------------------------------------------------------------

TextToSpeechDoc = _doc(
    "TextToSpeechDoc",
    "post",
    extend_schema(
        operation_id="tts_create",
        tags=["speech"],
        summary="Text to speech",
        description="The audio file, in `format`. Counts against QUOTA_SPEECH_REQUESTS.",
        request=s.TextToSpeechSerializer,
        responses={
            **{(200, mime): OpenApiTypes.BINARY for mime in AUDIO_TYPES},
            502: OpenApiTypes.OBJECT,
            504: OpenApiTypes.OBJECT,
        },
        extensions={"x-quota": "speech"},
    ),
)

AsrJobCreateDoc = _doc(
    "AsrJobCreateDoc",
    "post",
    extend_schema(
        operation_id="asr_jobs_create",
        tags=["speech"],
        summary="Speech to text: start a job",
        description=(
            "Upload an audio file (multipart field `audio`, or the raw body): WAV, FLAC, Ogg (Opus, Vorbis),"
            " MP3 or WebM, at most ASR_MAX_UPLOAD_BYTES and AUDIO_MAX_UPLOAD_S. Answered at once with the job"
            " (202, `Location` names it); poll `GET /api/v1/asr/jobs/{job_id}`. Counts against"
            " QUOTA_SPEECH_REQUESTS."
        ),
        request=_upload,
        responses={202: s.AsrJobSerializer},
        extensions={"x-quota": "speech"},
    ),
)

MemorySearchDoc = _doc(
    "MemorySearchDoc",
    "get",
    extend_schema(
        operation_id="memories_search",
        tags=["memories"],
        summary="Search what a character remembers of me",
        description="By meaning, the nearest first. Counts against QUOTA_MEMORY_SEARCHES.",
        parameters=[s.MemorySearchQuerySerializer],
        responses={200: s.MemorySearchResultSerializer, 503: OpenApiTypes.OBJECT, 504: OpenApiTypes.OBJECT},
        extensions={"x-quota": "memory_search"},
    ),
)

# --- the old paths --------------------------------------------------------------------------------

_memory_items = inline_serializer(
    "LegacyMemory",
    many=True,
    fields={
        "id": serializers.UUIDField(),
        "text": serializers.CharField(),
        "kind": serializers.CharField(),
        "importance": serializers.FloatField(),
        "character": serializers.CharField(),
        "created_at": serializers.DateTimeField(),
        "similarity": serializers.FloatField(allow_null=True),
    },
)

LegacyCharactersDoc = _doc(
    "LegacyCharactersDoc",
    "get",
    extend_schema(
        operation_id="legacy_characters_list",
        tags=["deprecated"],
        summary="Published characters (use GET /api/v1/characters)",
        deprecated=True,
        responses=inline_serializer(
            "LegacyCharacters",
            {
                "characters": inline_serializer(
                    "LegacyCharacter",
                    {
                        "name": serializers.CharField(),
                        "display_name": serializers.CharField(),
                        "description": serializers.CharField(),
                        "voice_id": serializers.CharField(allow_null=True),
                        "avatar_url": serializers.CharField(allow_null=True),
                        "greeting": serializers.CharField(),
                        "tags": serializers.ListField(child=serializers.CharField()),
                    },
                    many=True,
                )
            },
        ),
    ),
    public=True,
)

LegacyVoicesDoc = _doc(
    "LegacyVoicesDoc",
    "get",
    extend_schema(
        operation_id="legacy_voices_list",
        tags=["deprecated"],
        summary="Voices (use GET /api/v1/voices)",
        deprecated=True,
        responses=inline_serializer("LegacyVoices", {"voices": s.VoiceSerializer(many=True)}),
    ),
    public=True,
)

LegacyTextToSpeechDoc = _doc(
    "LegacyTextToSpeechDoc",
    "post",
    extend_schema(
        operation_id="legacy_tts",
        tags=["deprecated"],
        summary="Text to speech (use POST /api/v1/tts)",
        deprecated=True,
        request=s.TextToSpeechSerializer,
        responses={
            **{(200, mime): OpenApiTypes.BINARY for mime in AUDIO_TYPES},
            502: OpenApiTypes.OBJECT,
            504: OpenApiTypes.OBJECT,
        },
        extensions={"x-quota": "speech"},
    ),
)

LegacySpeechToTextDoc = _doc(
    "LegacySpeechToTextDoc",
    "post",
    extend_schema(
        operation_id="legacy_asr",
        tags=["deprecated"],
        summary="Speech to text, waiting for the text (use POST /api/v1/asr/jobs)",
        deprecated=True,
        request=_upload,
        responses={
            200: inline_serializer(
                "LegacyTranscript", {"text": serializers.CharField(), "duration_s": serializers.FloatField()}
            ),
            411: OpenApiTypes.OBJECT,
            504: OpenApiTypes.OBJECT,
        },
        extensions={"x-quota": "speech"},
    ),
)

LegacyMemoriesDoc = _doc(
    "LegacyMemoriesDoc",
    "get",
    extend_schema(
        operation_id="legacy_memories_list",
        tags=["deprecated"],
        summary="My memories, or a search (use GET /api/v1/memories and /api/v1/memories/search)",
        deprecated=True,
        parameters=[
            OpenApiParameter("character", str, description="A character's name; needed with `q`."),
            OpenApiParameter("q", {"type": "string", "maxLength": 500}, description="Search by meaning."),
            OpenApiParameter("limit", {"type": "integer", "minimum": 1, "maximum": 200}, description="Default 50."),
        ],
        responses={
            200: inline_serializer("LegacyMemories", {"memories": _memory_items}),
            503: OpenApiTypes.OBJECT,
            504: OpenApiTypes.OBJECT,
        },
        extensions={"x-quota": "memory_search"},
    ),
)

LegacyMemoryDoc = _doc(
    "LegacyMemoryDoc",
    "delete",
    extend_schema(
        operation_id="legacy_memory_delete",
        tags=["deprecated"],
        summary="Forget a memory (use DELETE /api/v1/memories/{memory_id})",
        deprecated=True,
        parameters=[OpenApiParameter("memory_id", OpenApiTypes.UUID, OpenApiParameter.PATH)],
        responses={204: None},
    ),
)
