"""The conversation socket protocol at /ws: every frame is defined here, once.

JSON text frames, each an object with a `type`. Wire-compatible with ChatAnon clients. The
reference in docs/protocol.md is generated from these classes (`manage.py protocol_docs`) and a
test fails when the two differ. The channel-layer events that carry frames from the workers to a
socket are defined here too.

A leaf module (pydantic and the standard library only; an import-linter contract keeps it so):
the domain services and the workers build frames and events from these classes, never raw dicts.
"""

from typing import Annotated, ClassVar, Literal, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_serializer


def _known_code(code: str) -> str:
    if code not in ErrorCode.DESCRIPTIONS:
        raise ValueError(f"{code!r} is not an ErrorCode")
    return code


KnownCode = Annotated[str, AfterValidator(_known_code)]  # error codes come only from ErrorCode


class Frame(BaseModel):
    """Client frames ignore fields they do not know: ChatAnon clients send a few of their own."""

    model_config = ConfigDict(extra="ignore")
    type: str


class ServerFrame(Frame):
    """What the server sends: an unknown or misspelled field fails when the frame is built."""

    model_config = ConfigDict(extra="forbid")


# A client frame is a flat object: deeper nesting is refused before parsing (json.loads recurses).
MAX_JSON_DEPTH = 32


# --- client → server ---------------------------------------------------------------------------


class Connect(Frame):
    """First frame of every socket: authenticate and pick the character.

    Give `api_token`, or omit it on a browser socket that carries a logged-in session cookie
    (such sockets must come from an allowed Origin). Set `text_deltas` to also receive
    `text_delta` frames as tokens arrive (ChatAnon clients leave it off). `output_sample_rate`
    is the rate of the PCM in `audio_chunk` frames.

    The socket continues your latest session with the character, or opens the one named by
    `session_id` (one of yours, live, with this character; otherwise `unknown_session` and the
    socket stays unconnected). `connected.session_id` says which session it is.
    """

    type: Literal["connect"]
    api_token: str | None = None
    character_name: str
    session_id: str | None = Field(default=None, max_length=64)
    text_deltas: bool = False
    output_sample_rate: int = Field(default=16000, ge=8000, le=48000)


class Message(Frame):
    """Say something to the character; starts a text turn."""

    type: Literal["message"]
    content: str


class SwitchCharacter(Frame):
    """Talk to another character from now on (continues your latest session with it)."""

    type: Literal["switch_character"]
    character_name: str


class ClearHistory(Frame):
    """Start a new session with the current character; the old one stays saved."""

    type: Literal["clear_history"]


class Regenerate(Frame):
    """Write the last reply again: a text turn on the current session.

    The session's last reply (the character's message after your last message) is set aside —
    kept with status `replaced`, left out of later prompts, the session list and search — and a
    new reply to the same message of yours streams back as for `message` (`thinking`, `llm_start`,
    …, `turn_end` with the new reply's `message_id`). Refused with `nothing_to_regenerate` when
    the session has no reply to replace (only the greeting), with `turn_in_progress` while a
    turn runs (send `stop` first); it counts as a turn for the quota.

    Sent at once after a stopped turn's `turn_end`, it replaces the stopped reply: that reply is
    saved before its `turn_end` is sent (see `stop`), so no wait or retry is needed.
    """

    type: Literal["regenerate"]


class Stop(Frame):
    """Interrupt the character, as the Stop button does; the session goes on.

    With a turn in flight: `interrupted`, then `turn_end` with status `interrupted` and the
    reply's `message_id`. The reply is saved as far as it was sent to you (its `text_delta`s, or
    its `response`s without them; spoken: the units whose audio had started playing), marked
    interrupted, before that `turn_end` is sent: a `regenerate` or `message` sent on seeing it
    always finds the stopped reply saved, in its place before your next message. The job that
    was writing it stops a moment later and never changes that text or status. After a spoken
    reply whose audio may still be playing: `interrupted` alone. Otherwise `no_turn`.
    """

    type: Literal["stop"]


class Ping(Frame):
    """Keep-alive; answered with `pong`."""

    type: Literal["ping"]


class AudioMessage(Frame):
    """A whole utterance: 16 kHz mono s16le PCM (or a wav/webm/ogg/mp3 file), base64. Starts a voice turn."""

    type: Literal["audio_message"]
    audio_base64: str


class AudioStreamStart(Frame):
    """Push-to-talk pressed: audio follows in `audio_stream_chunk` frames (or binary PCM frames)."""

    type: Literal["audio_stream_start"]


class AudioStreamChunk(Frame):
    """A piece of the push-to-talk utterance: 16 kHz mono s16le PCM, base64."""

    type: Literal["audio_stream_chunk"]
    audio_base64: str


class AudioStreamEnd(Frame):
    """Push-to-talk released: the utterance is complete and the voice turn starts."""

    type: Literal["audio_stream_end"]


class VoiceCallStart(Frame):
    """Start a hands-free call: the server listens, decides when you stopped talking, and answers.

    Speaking while the character talks interrupts it (barge-in).

    Answered with `voice_call_listening`. On a new session (you have said nothing in it yet) the
    character then speaks its greeting at once, from audio rendered ahead of time: `tts_start`
    (the greeting), its `audio_chunk`s at `output_sample_rate`, `audio_end` — outside any turn, so
    no `turn_end` follows. Nothing is sent while the greeting's audio is still being rendered (a
    character just created, or whose greeting or voice just changed); `connected.message` has its text.
    Speaking over the greeting starts your turn as usual; no `interrupted` comes for the greeting
    itself, so stop its playback when you start talking.
    """

    type: Literal["voice_call_start", "agent_mode_start"]


class VoiceCallAudioChunk(Frame):
    """Microphone audio during a call: 16 kHz mono s16le PCM, base64 (or binary frames)."""

    type: Literal["voice_call_audio_chunk", "agent_audio_chunk"]
    audio_base64: str


class VoiceCallStop(Frame):
    """Hang up: the call ends and a reply in progress is interrupted."""

    type: Literal["voice_call_stop", "agent_mode_stop"]


class MemoriesList(Frame):
    """What the character remembers of you: the newest first, or the nearest `query` (a search).
    Answered with `memories`."""

    type: Literal["memories_list"]
    query: str = Field(default="", max_length=500)
    limit: int = Field(default=20, ge=1, le=100)


class MemoryDelete(Frame):
    """Forget one memory, at once and everywhere. Answered with `memory_deleted`."""

    type: Literal["memory_delete"]
    memory_id: str


CLIENT_FRAMES: dict[str, type[Frame]] = {
    name: cls
    for cls in (
        Connect,
        Message,
        SwitchCharacter,
        ClearHistory,
        Regenerate,
        Stop,
        Ping,
        AudioMessage,
        AudioStreamStart,
        AudioStreamChunk,
        AudioStreamEnd,
        VoiceCallStart,
        VoiceCallAudioChunk,
        VoiceCallStop,
        MemoriesList,
        MemoryDelete,
    )
    for name in cls.model_fields["type"].annotation.__args__
}


# --- server → client ---------------------------------------------------------------------------


class Connected(ServerFrame):
    """First frame the server sends, after a successful `connect`. `message` is the greeting."""

    type: Literal["connected"] = "connected"
    character: str
    character_display_name: str
    message: str
    session_id: str


class Thinking(ServerFrame):
    """Your message is saved and the reply is queued."""

    type: Literal["thinking"] = "thinking"


class LlmStart(ServerFrame):
    """A worker has started writing the reply."""

    type: Literal["llm_start"] = "llm_start"


class TextDelta(ServerFrame):
    """New reply text as tokens arrive (only with `text_deltas: true` on connect)."""

    type: Literal["text_delta"] = "text_delta"
    content: str


class Response(ServerFrame):
    """One completed sentence of the reply. `content_cn` repeats `content` for ChatAnon clients."""

    type: Literal["response"] = "response"
    content: str
    content_cn: str
    emotion: str


class LlmEnd(ServerFrame):
    """The reply is fully written; `elapsed_time` is seconds since `llm_start`."""

    type: Literal["llm_end"] = "llm_end"
    elapsed_time: float


class TurnEnd(ServerFrame):
    """Last frame of every turn, even a failed or interrupted one."""

    type: Literal["turn_end"] = "turn_end"
    status: Literal["complete", "interrupted", "failed"] = "complete"
    message_id: str | None = None


class CharacterSwitched(ServerFrame):
    """Answer to `switch_character`; `message` is the new character's greeting."""

    type: Literal["character_switched"] = "character_switched"
    character: str
    character_display_name: str
    message: str
    session_id: str


class HistoryCleared(ServerFrame):
    """Answer to `clear_history`: a new session has started."""

    type: Literal["history_cleared"] = "history_cleared"
    session_id: str


class AudioStreamStarted(ServerFrame):
    """Answer to `audio_stream_start`: send the audio."""

    type: Literal["audio_stream_started"] = "audio_stream_started"


class VoiceCallListening(ServerFrame):
    """In a call, the server is waiting for you to speak (after `voice_call_start` and each turn)."""

    type: Literal["voice_call_listening"] = "voice_call_listening"


class AsrStart(ServerFrame):
    """Your utterance is complete and is being transcribed."""

    type: Literal["asr_start"] = "asr_start"


class Transcription(ServerFrame):
    """What you said: partial guesses while you speak (`is_partial`), then the final text.

    The reply may already be on its way, started on a partial that covered all the speech (at a
    pause, REPLY_ON_PARTIAL): none of it is sent before the final text and `asr_end`, and if the
    final text says something else it is replaced by a reply to that.
    """

    type: Literal["transcription"] = "transcription"
    text: str
    is_partial: bool = False


class AsrEnd(ServerFrame):
    """The final transcript; the character's reply follows as in a text turn."""

    type: Literal["asr_end"] = "asr_end"
    text: str


class TtsStart(ServerFrame):
    """A spoken unit (a sentence, or the first clause) begins; its `response` and audio follow."""

    type: Literal["tts_start"] = "tts_start"
    text: str
    emotion: str


class AudioChunk(ServerFrame):
    """Audio of the current unit: mono s16le PCM at `audio_sample_rate`, base64. Play in order."""

    type: Literal["audio_chunk"] = "audio_chunk"
    audio_base64: str
    audio_format: Literal["pcm"] = "pcm"
    audio_sample_rate: int


class AudioEnd(ServerFrame):
    """All audio of the reply (or of the greeting that opens a call) has been sent (before `turn_end`)."""

    type: Literal["audio_end"] = "audio_end"


class Interrupted(ServerFrame):
    """You spoke over the character: stop playback now. The reply is saved as far as it was sent."""

    type: Literal["interrupted"] = "interrupted"


class Pong(ServerFrame):
    """Answer to `ping`."""

    type: Literal["pong"] = "pong"


class MemoryItem(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    text: str
    kind: str
    importance: float
    character: str
    created_at: str
    similarity: float | None = None


class Memories(ServerFrame):
    """The memories of the connected character about you (answer to `memories_list`): newest first,
    or nearest the query. Each item: `id`, `text`, `kind` (fact, preference, promise, summary),
    `importance` (0-1), `character`, `created_at` (ISO 8601), `similarity` (cosine, searches only)."""

    type: Literal["memories"] = "memories"
    items: list[MemoryItem]


class MemoryDeleted(ServerFrame):
    """The memory is gone from the database and the index."""

    type: Literal["memory_deleted"] = "memory_deleted"
    memory_id: str


class Error(ServerFrame):
    """Something in a frame was wrong, or a turn failed. The socket stays open (see codes).

    `retry_after` (seconds) comes with `rate_limited` and `audio_rate_exceeded`: when to try again.
    """

    type: Literal["error"] = "error"
    code: KnownCode
    message: str
    retry_after: float | None = None

    @model_serializer(mode="wrap")
    def _omit_empty_retry_after(self, handler):
        data = handler(self)
        if data.get("retry_after") is None:
            data.pop("retry_after", None)  # only rate limits carry it
        return data


class Disconnected(ServerFrame):
    """The server is closing this socket; `reason` says why: `new_connection` (another socket took
    this API token), `auth_timeout` (no valid `connect` within WS_AUTH_TIMEOUT_S), `token_revoked`,
    `user_deactivated` or `logged_out` (the browser session that authenticated this socket logged
    out). The close code follows (see close codes)."""

    type: Literal["disconnected"] = "disconnected"
    reason: str


SERVER_FRAMES: tuple[type[ServerFrame], ...] = (
    Connected,
    Thinking,
    LlmStart,
    TextDelta,
    Response,
    LlmEnd,
    TurnEnd,
    AudioStreamStarted,
    VoiceCallListening,
    AsrStart,
    Transcription,
    AsrEnd,
    TtsStart,
    AudioChunk,
    AudioEnd,
    Interrupted,
    CharacterSwitched,
    HistoryCleared,
    Pong,
    Memories,
    MemoryDeleted,
    Error,
    Disconnected,
)
SERVER_FRAME_TYPES: dict[str, type[ServerFrame]] = {cls.model_fields["type"].default: cls for cls in SERVER_FRAMES}
AnyServerFrame = Annotated[Union[SERVER_FRAMES], Field(discriminator="type")]  # noqa: UP007 - a tuple of classes


# --- worker → socket (channel-layer events) -----------------------------------------------------


class Event(BaseModel):
    """A channel-layer message to a socket's consumer (or a REST view's reply channel); `type` names
    the consumer's handler (`turn.frames` → `turn_frames`). Unknown fields fail when it is built."""

    model_config = ConfigDict(extra="forbid")
    type: str

    def message(self) -> dict:
        """The layer's message: fields left unset (None) are left out."""
        return {k: v for k, v in self.model_dump().items() if v is not None}


class ErrorBody(BaseModel):
    """A job's failure, as REST answers and `error` frames show it."""

    model_config = ConfigDict(extra="forbid")
    code: KnownCode
    message: str


class TurnFrames(Event):
    """Frames a job produced for a turn, in order; the socket drops those of a turn it left.
    `units` comes with the `llm_end` of a spoken reply: how many units TTS jobs will send."""

    type: Literal["turn.frames"] = "turn.frames"
    turn_id: str
    frames: list[AnyServerFrame]
    units: int | None = None


class TurnUnit(Event):
    """Frames of spoken unit `seq` from a TTS job (`last`: the unit is complete); played in order."""

    type: Literal["turn.unit"] = "turn.unit"
    turn_id: str
    seq: int
    frames: list[AnyServerFrame]
    last: bool


class AsrPartialResult(Event):
    """A partial transcript of the utterance so far; `covered` is 0 when it must not stand for the audio."""

    type: Literal["asr.partial"] = "asr.partial"
    partial_id: str
    text: str
    covered: int


class MemoryResults(Event):
    """A memory search's answer: `items`, nearest first, or `error`."""

    type: Literal["memory.results"] = "memory.results"
    request_id: str = ""
    items: list[MemoryItem] | None = None
    error: ErrorBody | None = None


class TtsResult(Event):
    """A REST text-to-speech job's answer: the encoded `audio` file, or `error`."""

    type: Literal["tts.result"] = "tts.result"
    audio: bytes | None = None
    error: ErrorBody | None = None


class AsrResult(Event):
    """A REST speech-to-text job's answer: `text` and `duration_s`, or `error`."""

    type: Literal["asr.result"] = "asr.result"
    text: str | None = None
    duration_s: float | None = None
    error: ErrorBody | None = None


EVENTS: tuple[type[Event], ...] = (TurnFrames, TurnUnit, AsrPartialResult, MemoryResults, TtsResult, AsrResult)


class ErrorCode:
    """Stable `error.code` values. Only `auth_failed`, `origin_not_allowed` and a refused socket's
    `rate_limited` close the socket."""

    INVALID_JSON = "invalid_json"
    INVALID_FRAME = "invalid_frame"
    UNKNOWN_TYPE = "unknown_type"
    MISSING_FIELD = "missing_field"
    INVALID_FIELD = "invalid_field"
    FRAME_TOO_LARGE = "frame_too_large"
    BINARY_NOT_EXPECTED = "binary_not_expected"
    NOT_CONNECTED = "not_connected"
    ALREADY_CONNECTED = "already_connected"
    AUTH_FAILED = "auth_failed"
    ORIGIN_NOT_ALLOWED = "origin_not_allowed"
    UNKNOWN_CHARACTER = "unknown_character"
    EMPTY_MESSAGE = "empty_message"
    MESSAGE_TOO_LONG = "message_too_long"
    TURN_IN_PROGRESS = "turn_in_progress"
    LLM_FAILED = "llm_failed"
    TURN_TIMEOUT = "turn_timeout"
    INVALID_AUDIO = "invalid_audio"
    CORRUPT_AUDIO = "corrupt_audio"
    UNSUPPORTED_AUDIO = "unsupported_audio"
    DECODE_TIMEOUT = "decode_timeout"
    AUDIO_TOO_LARGE = "audio_too_large"
    REQUEST_TOO_LARGE = "request_too_large"
    EMPTY_AUDIO = "empty_audio"
    UTTERANCE_TOO_LONG = "utterance_too_long"
    CHUNK_TOO_LARGE = "chunk_too_large"
    AUDIO_RATE_EXCEEDED = "audio_rate_exceeded"
    NO_STREAM = "no_stream"
    NO_CALL = "no_call"
    NO_SPEECH = "no_speech"
    AUDIO_EXPIRED = "audio_expired"
    ASR_FAILED = "asr_failed"
    TTS_FAILED = "tts_failed"
    INVALID_MEMORY_ID = "invalid_memory_id"
    MEMORY_NOT_FOUND = "memory_not_found"
    MEMORY_UNAVAILABLE = "memory_unavailable"
    ENGINE_FAILED = "engine_failed"
    RATE_LIMITED = "rate_limited"
    INTERNAL_ERROR = "internal_error"
    TEXT_TOO_LONG = "text_too_long"
    UNSUPPORTED_FORMAT = "unsupported_format"
    UNKNOWN_VOICE = "unknown_voice"
    TTS_TIMEOUT = "tts_timeout"
    ASR_TIMEOUT = "asr_timeout"
    MEMORY_TIMEOUT = "memory_timeout"
    JOB_RUNNING = "job_running"
    JOB_NOT_RESUMABLE = "job_not_resumable"
    JOB_NOT_RUNNING = "job_not_running"
    JOB_NOT_FOUND = "job_not_found"
    UNKNOWN_SESSION = "unknown_session"
    NOTHING_TO_REGENERATE = "nothing_to_regenerate"
    NO_TURN = "no_turn"
    INVALID_CARD = "invalid_card"
    CARD_TOO_LARGE = "card_too_large"
    UNSUPPORTED_CARD = "unsupported_card"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    NOT_ACCEPTABLE = "not_acceptable"
    PERMISSION_DENIED = "permission_denied"
    INVALID_REQUEST = "invalid_request"
    UNKNOWN_TOKEN = "unknown_token"

    DESCRIPTIONS: ClassVar[dict[str, str]] = {
        INVALID_JSON: (
            f"The frame is not valid JSON text: bad syntax, `NaN`/`Infinity`, or nested deeper than {MAX_JSON_DEPTH} levels."
        ),
        INVALID_FRAME: "The frame is JSON but not an object with a string `type`.",
        UNKNOWN_TYPE: "No client frame has this `type`.",
        MISSING_FIELD: "A required field of the frame is missing.",
        INVALID_FIELD: "A field has the wrong type or value (text may not hold NUL characters or unpaired surrogates).",
        FRAME_TOO_LARGE: "The frame is over WS_MAX_FRAME_BYTES.",
        BINARY_NOT_EXPECTED: "A binary (raw PCM) frame arrived outside a push-to-talk stream or a call.",
        NOT_CONNECTED: "Send `connect` first.",
        ALREADY_CONNECTED: "This socket is already connected; use `switch_character`.",
        AUTH_FAILED: "Unknown or revoked token, or no logged-in session. Closes with 4001.",
        ORIGIN_NOT_ALLOWED: "A cookie-authenticated socket came from a foreign Origin. Closes with 4003.",
        UNKNOWN_CHARACTER: "No published character has that name.",
        EMPTY_MESSAGE: "The message has no text.",
        MESSAGE_TOO_LONG: "The message is over WS_MAX_MESSAGE_CHARS characters.",
        TURN_IN_PROGRESS: (
            "Wait for `turn_end` before sending the next message. HTTP turns (409): the session has a turn running."
        ),
        LLM_FAILED: (
            'The model failed to write a reply, or ran past LLM_SOFT_TIME_LIMIT_S ("took too long"); '
            "the turn ends with status `failed`."
        ),
        TURN_TIMEOUT: (
            "No word from the worker for TURN_IDLE_TIMEOUT_S (an HTTP turn: or no reply within API_TURN_TIMEOUT_S,"
            " 504); the turn ends as failed."
        ),
        INVALID_AUDIO: (
            "`audio_base64` is not base64 of 16-bit PCM (odd byte count or bad base64), or a file's header declares"
            " what no recording has: a rate outside 8–192 kHz, over 8 channels, an impossible sample size."
        ),
        CORRUPT_AUDIO: (
            "The audio file's header does not parse, its declared sizes do not match its bytes, or it could not"
            " be decoded (then the turn ends as failed)."
        ),
        UNSUPPORTED_AUDIO: (
            "A file in a container or codec not accepted: send WAV (PCM/float), FLAC, Ogg (Opus/Vorbis), MP3 or"
            " WebM (Opus/Vorbis)."
        ),
        DECODE_TIMEOUT: "Decoding the file took longer than AUDIO_DECODE_TIMEOUT_S; the turn ends as failed.",
        AUDIO_TOO_LARGE: "POST /api/asr only: the upload is over ASR_MAX_UPLOAD_BYTES (HTTP 413).",
        REQUEST_TOO_LARGE: (
            "HTTP only: a request body over DATA_UPLOAD_MAX_MEMORY_SIZE, refused by the server (413); over 4 MiB"
            " for POST /v1/chat/completions."
        ),
        EMPTY_AUDIO: "The utterance has no audio.",
        UTTERANCE_TOO_LONG: (
            "The utterance is over AUDIO_MAX_UTTERANCE_S seconds (a file's declared or decoded length;"
            " AUDIO_MAX_UPLOAD_S for POST /api/asr); it was dropped."
        ),
        CHUNK_TOO_LARGE: "An audio chunk is over AUDIO_MAX_CHUNK_BYTES; it was dropped.",
        AUDIO_RATE_EXCEEDED: "Audio arrives faster than AUDIO_MAX_RATE_FACTOR × real time (per socket, "
        "plus a 2 s burst); the chunk was dropped. `retry_after`: when it would fit.",
        NO_STREAM: "`audio_stream_chunk`/`audio_stream_end` without `audio_stream_start`.",
        NO_CALL: "`voice_call_audio_chunk`/`voice_call_stop` without `voice_call_start`.",
        NO_SPEECH: "No words were heard in the utterance; the turn ends as failed.",
        AUDIO_EXPIRED: "The utterance expired before a worker took it; the turn ends as failed.",
        ASR_FAILED: "Speech recognition failed or ran past ASR_SOFT_TIME_LIMIT_S; the turn ends as failed.",
        TTS_FAILED: (
            "Speech synthesis failed for a unit, or ran past TTS_SOFT_TIME_LIMIT_S; "
            "its text still arrives as `response`."
        ),
        INVALID_MEMORY_ID: "`memory_id` is not a UUID.",
        MEMORY_NOT_FOUND: "You have no memory with that id (with this or any character).",
        MEMORY_UNAVAILABLE: "The memory index could not be searched just now; try again.",
        ENGINE_FAILED: "A model engine failed or is not configured (REST and admin; a turn says which step failed).",
        RATE_LIMITED: "Over a quota (turns or memory searches per QUOTA_WINDOW_S, open sockets per user or "
        "address, HTTP turns running per user); `retry_after` says when to try again. Refused sockets then close "
        "with 4029; HTTP answers 429 with Retry-After.",
        INTERNAL_ERROR: (
            "The server failed on this frame or event; the message carries a reference for its log."
            " The socket stays open; a turn it broke ends with `turn_end` status `failed`."
        ),
        TEXT_TOO_LONG: "`text` (REST text-to-speech) is over TTS_MAX_CHARS characters.",
        UNSUPPORTED_FORMAT: "The audio format asked for is not one of wav, mp3, ogg.",
        UNKNOWN_VOICE: "No voice has that name (GET /api/voices lists them).",
        TTS_TIMEOUT: "No text-to-speech worker answered in time (REST; HTTP 504).",
        ASR_TIMEOUT: "No speech-recognition worker answered in time (REST; HTTP 504).",
        MEMORY_TIMEOUT: "No embedding worker answered a memory search in time (REST and the memories page; HTTP 504).",
        JOB_RUNNING: "A re-embedding job is already running (admin, `reembed_memories`).",
        JOB_NOT_RESUMABLE: "That re-embedding job is not in a state that can be resumed.",
        JOB_NOT_RUNNING: "That re-embedding job is not running, so it cannot be cancelled.",
        JOB_NOT_FOUND: (
            "No re-embedding job has that id (admin); REST: you have no speech-to-text job with that id (HTTP 404)."
        ),
        UNKNOWN_SESSION: (
            "You have no live session with that id with this character (another user's, a deleted one, or one"
            " with another character); the socket stays unconnected. HTTP: 404."
        ),
        NOTHING_TO_REGENERATE: (
            "`regenerate` needs a reply to replace: the session's last message must be the character's reply"
            " to one of yours (a greeting alone is not)."
        ),
        NO_TURN: "`stop` with no turn in flight (it had already ended): nothing was stopped; safe to ignore.",
        INVALID_CARD: (
            "A character card file that cannot be read: neither a PNG image nor a JSON object, a damaged PNG (cut"
            " short, a bad CRC, a chunk size that lies), a PNG with no `chara`/`ccv3` text chunk, bad base64,"
            " JSON that is broken or not UTF-8, a field of the wrong type, or no `name`. The message names the field."
        ),
        CARD_TOO_LARGE: (
            "A character card over one of the card limits (file size, card JSON size, PNG chunks, inflated text,"
            " nesting depth, a text field's length, lorebook entries, keys of an entry); the message names the limit."
        ),
        UNSUPPORTED_CARD: (
            "A card in a form not read: a `spec` other than `chara_card_v2` or `chara_card_v3` (V1 cards have no"
            " `spec`), a CHARX (zip) file, or a card in a JPEG, WebP or GIF image. Send the PNG or JSON card."
        ),
        NOT_FOUND: "REST: no such path under /api/v1/, or a page number past the last page (HTTP 404).",
        METHOD_NOT_ALLOWED: "REST: the path does not take this HTTP method (HTTP 405; `Allow` lists those it takes).",
        UNSUPPORTED_MEDIA_TYPE: "REST: the body's Content-Type is not one the endpoint reads (HTTP 415).",
        NOT_ACCEPTABLE: "REST: the `Accept` header asks for a type the endpoint cannot answer in (HTTP 406).",
        PERMISSION_DENIED: (
            "REST: you may not do this; with the logged-in session (cookie), an unsafe method without a valid"
            " CSRF token (`X-CSRFToken`) is refused so (HTTP 403). Another user's objects answer 404, never this."
        ),
        INVALID_REQUEST: "REST: the body could not be read as its Content-Type says (a broken multipart or form body).",
        UNKNOWN_TOKEN: "REST: you have no live API token with that id (another user's, a revoked one; HTTP 404).",
    }


class CloseCode:
    """WebSocket close codes the server uses."""

    AUTH_FAILED = 4001
    ORIGIN_NOT_ALLOWED = 4003
    AUTH_TIMEOUT = 4008
    REPLACED = 4009
    RATE_LIMITED = 4029
    TOKEN_REVOKED = 4010
    USER_DEACTIVATED = 4011
    LOGGED_OUT = 4012

    DESCRIPTIONS: ClassVar[dict[int, str]] = {
        AUTH_FAILED: "Authentication failed (after an `error` frame with code `auth_failed`).",
        ORIGIN_NOT_ALLOWED: "Cookie authentication from an Origin that is not allowed.",
        AUTH_TIMEOUT: "No valid `connect` within WS_AUTH_TIMEOUT_S of opening (after `disconnected`).",
        REPLACED: "A newer socket connected with the same API token (after `disconnected`).",
        RATE_LIMITED: "Too many open sockets for this user or client address (after `error` `rate_limited`).",
        TOKEN_REVOKED: "The socket's API token was revoked (after `disconnected` with reason `token_revoked`).",
        USER_DEACTIVATED: "The user was deactivated (after `disconnected` with reason `user_deactivated`).",
        LOGGED_OUT: "The browser session of a cookie socket logged out (after `disconnected` with reason `logged_out`).",
    }
    # `disconnected.reason` → close code, when access ends while the socket is open.
    FOR_REASON: ClassVar[dict[str, int]] = {
        "token_revoked": TOKEN_REVOKED,
        "user_deactivated": USER_DEACTIVATED,
        "logged_out": LOGGED_OUT,
    }
