"""REST speech endpoints for clients without a socket: voices, text → speech, speech file → text.

The work runs on queues of its own (tts_api, asr_api), so a flood of it never delays a live turn on
the tts and asr queues; the view waits for the job's answer on a channel of its own, so the web
edge needs no models. Each request counts against the user's QUOTA_SPEECH_REQUESTS (429 when over).
"""

import io
import json
from collections.abc import Callable

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.files.uploadedfile import InMemoryUploadedFile
from django.core.files.uploadhandler import FileUploadHandler, StopUpload
from django.http import HttpResponse, JsonResponse, UnreadablePostError
from django.http.multipartparser import MultiPartParserError
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST
from rest_framework.exceptions import ValidationError

from apps.accounts.quotas import quota_take
from apps.accounts.services import token_authenticate
from apps.api.errors import error
from apps.api.v1.exceptions import error_response
from apps.api.v1.serializers import TextToSpeechSerializer
from apps.characters.models import Voice
from apps.characters.selectors import voice_spec_of
from apps.conversations.utterances import utterance_put
from apps.core.audio import AudioError, probe
from apps.core.events import queue_and_wait
from apps.realtime import protocol as p

CONTENT_TYPES = {"wav": "audio/wav", "mp3": "audio/mpeg", "ogg": "audio/ogg"}
_MULTIPART_OVERHEAD = 64 * 1024  # boundaries and part headers around an upload at the size cap


async def over_quota(user, kind: str) -> JsonResponse | None:
    """Count one `kind` request for the user: None within the quota, else a 429 with `Retry-After`."""
    retry_after = await sync_to_async(quota_take, thread_sensitive=False)(user_id=user.pk, kind=kind)
    if retry_after is None:
        return None
    return error(429, p.ErrorCode.RATE_LIMITED, "Too many requests; try again later.", retry_after=retry_after)


async def _user(request):
    """The caller (Bearer token or the logged-in session), or None."""
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        token = await database_sync_to_async(token_authenticate)(key=header[7:].strip())
        return token.user if token else None
    user = await request.auser()
    return user if user.is_authenticated else None


@require_GET
def voices(request):
    """`{voices: [{name, engine, language, speed}]}`: the voices characters can have."""
    rows = Voice.objects.order_by("name").values("name", "engine", "language", "speed")
    return JsonResponse({"voices": list(rows)})


async def tts_answer(body) -> HttpResponse:
    """A text-to-speech request's JSON body (TextToSpeechSerializer), rendered on the tts_api queue: the
    audio file, or an error in the API's shape. Shared by /api/v1/tts and the old /api/tts."""
    request = TextToSpeechSerializer(data=body)
    try:
        request.is_valid(raise_exception=True)
    except ValidationError as exc:
        return error_response(exc)
    asked = request.validated_data
    voice = None
    if asked.get("voice"):
        voice = await Voice.objects.filter(name=asked["voice"]).afirst()
        if voice is None:
            return error(404, p.ErrorCode.UNKNOWN_VOICE, f"No voice named {asked['voice']!r}; see GET /api/v1/voices.")
    spec = voice_spec_of(voice)
    spec["speed"] *= asked["speed"]
    try:
        answer = await queue_and_wait(
            "workers.tts.tasks.tts_render",
            120,
            text=asked["text"],
            voice=spec,
            emotion=asked["emotion"],
            fmt=asked["format"],
            sample_rate=asked["sample_rate"],
        )
    except TimeoutError:
        return error(504, p.ErrorCode.TTS_TIMEOUT, "No TTS worker answered in time.")
    if "error" in answer:
        return error(502, answer["error"]["code"], answer["error"]["message"])
    return HttpResponse(answer["audio"], content_type=CONTENT_TYPES[asked["format"]])


@csrf_exempt
@require_POST
async def text_to_speech(request):
    """POST JSON `{text, voice?, speed?, emotion?, format?: wav|mp3|ogg, sample_rate?}` → audio file.

    Deprecated: POST /api/v1/tts (the same, with the session's CSRF check and JSON's limits).
    """
    user = await _user(request)
    if user is None:
        return error(401, p.ErrorCode.AUTH_FAILED, "Send `Authorization: Bearer <api token>`.")
    if limited := await over_quota(user, "speech"):
        return limited
    try:
        body = json.loads(request.body or b"{}")
    except ValueError:
        return error(400, p.ErrorCode.INVALID_JSON, "The body is not valid JSON.")
    return await tts_answer(body if isinstance(body, dict) else {})


class CappedUpload(FileUploadHandler):
    """Keeps the multipart field `audio` in memory, and stops the upload once the files pass `cap` bytes.

    The only upload handler of /api/asr: nothing is written to disk, and no more than `cap` bytes of
    files are ever held, however large the body is.
    """

    def __init__(self, cap: int):
        super().__init__()
        self.cap, self.received, self.too_large = cap, 0, False
        self.buffer: io.BytesIO | None = None

    def new_file(self, field_name, *args, **kwargs):
        super().new_file(field_name, *args, **kwargs)
        self.buffer = io.BytesIO() if field_name == "audio" else None

    def receive_data_chunk(self, raw_data, start):
        self.received += len(raw_data)
        if self.received > self.cap:
            self.too_large = True
            raise StopUpload(connection_reset=True)  # read no further
        if self.buffer is not None:
            self.buffer.write(raw_data)

    def file_complete(self, file_size):
        if self.buffer is None:
            return None
        self.buffer.seek(0)
        return InMemoryUploadedFile(
            self.buffer, self.field_name, self.file_name, self.content_type, file_size, self.charset
        )


def _upload_read(request, cap: int, before_read: Callable | None = None) -> bytes | None:
    """The uploaded audio (multipart field `audio`, or the raw body), reading at most `cap` + 1 bytes; None past the cap.

    Django's ASGI handler has already spooled the body to a temporary file (to disk past
    FILE_UPLOAD_MAX_MEMORY_SIZE); this reads from it without loading more than the cap.
    `before_read(request)` runs once the cap is in place (a CSRF check reads a multipart body).
    """
    if request.content_type == "multipart/form-data":
        handler = CappedUpload(cap)
        request.upload_handlers = [handler]
        if before_read:
            before_read(request)
        upload = request.FILES.get("audio")
        if handler.too_large:
            return None
        return upload.read() if upload else b""
    if before_read:
        before_read(request)
    data = request.read(cap + 1)
    return None if len(data) > cap else data


async def upload_checked(request, *, before_read: Callable | None = None) -> bytes | HttpResponse:
    """An uploaded audio file whose size and header pass (ASR_MAX_UPLOAD_BYTES, AUDIO_MAX_UPLOAD_S), or the
    error response. The declared size is checked before the body is read, the header before any decode."""
    cap = settings.ASR_MAX_UPLOAD_BYTES
    too_large = error(413, p.ErrorCode.AUDIO_TOO_LARGE, f"Uploads are limited to {cap} bytes.")
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > cap + _MULTIPART_OVERHEAD:
        return too_large
    if request.content_type == "multipart/form-data" and not declared:  # Django parses such a body as empty
        return error(411, p.ErrorCode.MISSING_FIELD, "A multipart upload needs a Content-Length header.")
    try:
        data = await sync_to_async(_upload_read, thread_sensitive=False)(request, cap, before_read)
    except RequestDataTooBig:
        return too_large
    except (MultiPartParserError, UnreadablePostError):
        return error(400, p.ErrorCode.INVALID_AUDIO, "The multipart body could not be read.")
    if data is None:
        return too_large
    if not data:
        return error(400, p.ErrorCode.EMPTY_AUDIO, "Send the audio as the multipart field `audio` or as the body.")
    try:
        probe(data, max_s=settings.AUDIO_MAX_UPLOAD_S)
    except AudioError as exc:
        return error(400, exc.code, exc.message)
    return data


@csrf_exempt
@require_POST
async def speech_to_text(request):
    """POST an audio file (multipart field `audio`, or the raw body) → `{text, duration_s}`.

    Deprecated: POST /api/v1/asr/jobs queues the same work as a job to poll, and never holds the request.

    WAV, FLAC, Ogg (Opus, Vorbis), MP3 or WebM, at most ASR_MAX_UPLOAD_BYTES and AUDIO_MAX_UPLOAD_S.
    The size is checked before the body is read, the header before the ASR worker decodes it.
    """
    user = await _user(request)
    if user is None:
        return error(401, p.ErrorCode.AUTH_FAILED, "Send `Authorization: Bearer <api token>`.")
    if limited := await over_quota(user, "speech"):
        return limited
    data = await upload_checked(request)
    if isinstance(data, HttpResponse):
        return data
    utterance_id = await sync_to_async(utterance_put)(data)
    del data
    try:
        answer = await queue_and_wait("workers.asr.tasks.asr_file", 300, utterance_id=utterance_id)
    except TimeoutError:
        return error(504, p.ErrorCode.ASR_TIMEOUT, "No ASR worker answered in time.")
    if "error" in answer:
        return error(400, answer["error"]["code"], answer["error"]["message"])
    return JsonResponse({"text": answer["text"], "duration_s": answer["duration_s"]})
