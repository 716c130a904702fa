"""The conversation socket protocol at /ws: every frame is defined here, once.

JSON text frames, each an object with a `type`. Wire-compatible with ChatAnon clients. The
reference in docs/protocol.md is generated from these classes (`manage.py protocol_docs`) and a
test fails when the two differ.
"""

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field


class Frame(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: str


# --- client → server ---------------------------------------------------------------------------


class Connect(Frame):
    """First frame of every socket: authenticate and pick the character.

    Give `api_token`, or omit it on a browser socket that carries a logged-in session cookie
    (such sockets must come from an allowed Origin). Set `text_deltas` to also receive
    `text_delta` frames as tokens arrive (ChatAnon clients leave it off).
    """

    type: Literal["connect"]
    api_token: str | None = None
    character_name: str
    text_deltas: bool = False


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


class Ping(Frame):
    """Keep-alive; answered with `pong`."""

    type: Literal["ping"]


CLIENT_FRAMES: dict[str, type[Frame]] = {
    cls.model_fields["type"].annotation.__args__[0]: cls
    for cls in (Connect, Message, SwitchCharacter, ClearHistory, Ping)
}


# --- server → client ---------------------------------------------------------------------------


class Connected(Frame):
    """First frame the server sends, after a successful `connect`. `message` is the greeting."""

    type: Literal["connected"] = "connected"
    character: str
    character_display_name: str
    message: str
    session_id: str


class Thinking(Frame):
    """Your message is saved and the reply is queued."""

    type: Literal["thinking"] = "thinking"


class LlmStart(Frame):
    """A worker has started writing the reply."""

    type: Literal["llm_start"] = "llm_start"


class TextDelta(Frame):
    """New reply text as tokens arrive (only with `text_deltas: true` on connect)."""

    type: Literal["text_delta"] = "text_delta"
    content: str


class Response(Frame):
    """One completed sentence of the reply. `content_cn` repeats `content` for ChatAnon clients."""

    type: Literal["response"] = "response"
    content: str
    content_cn: str
    emotion: str


class LlmEnd(Frame):
    """The reply is fully written; `elapsed_time` is seconds since `llm_start`."""

    type: Literal["llm_end"] = "llm_end"
    elapsed_time: float


class TurnEnd(Frame):
    """Last frame of every turn, even a failed or interrupted one."""

    type: Literal["turn_end"] = "turn_end"
    status: Literal["complete", "interrupted", "failed"] = "complete"
    message_id: str | None = None


class CharacterSwitched(Frame):
    """Answer to `switch_character`; `message` is the new character's greeting."""

    type: Literal["character_switched"] = "character_switched"
    character: str
    character_display_name: str
    message: str
    session_id: str


class HistoryCleared(Frame):
    """Answer to `clear_history`: a new session has started."""

    type: Literal["history_cleared"] = "history_cleared"
    session_id: str


class Pong(Frame):
    """Answer to `ping`."""

    type: Literal["pong"] = "pong"


class Error(Frame):
    """Something in a frame was wrong, or a turn failed. The socket stays open (see codes)."""

    type: Literal["error"] = "error"
    code: str
    message: str


class Disconnected(Frame):
    """The server is closing this socket; `reason` says why (e.g. `new_connection`)."""

    type: Literal["disconnected"] = "disconnected"
    reason: str


SERVER_FRAMES: tuple[type[Frame], ...] = (
    Connected, Thinking, LlmStart, TextDelta, Response, LlmEnd, TurnEnd,
    CharacterSwitched, HistoryCleared, Pong, Error, Disconnected,
)  # fmt: skip


class ErrorCode:
    """Stable `error.code` values. Only `auth_failed` closes the socket."""

    INVALID_JSON = "invalid_json"
    INVALID_FRAME = "invalid_frame"
    UNKNOWN_TYPE = "unknown_type"
    MISSING_FIELD = "missing_field"
    INVALID_FIELD = "invalid_field"
    FRAME_TOO_LARGE = "frame_too_large"
    BINARY_NOT_SUPPORTED = "binary_not_supported"
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

    DESCRIPTIONS: ClassVar[dict[str, str]] = {
        INVALID_JSON: "The frame is not valid JSON.",
        INVALID_FRAME: "The frame is JSON but not an object with a string `type`.",
        UNKNOWN_TYPE: "No client frame has this `type`.",
        MISSING_FIELD: "A required field of the frame is missing.",
        INVALID_FIELD: "A field has the wrong type.",
        FRAME_TOO_LARGE: "The frame is over WS_MAX_FRAME_BYTES.",
        BINARY_NOT_SUPPORTED: "Binary frames are not accepted on this socket.",
        NOT_CONNECTED: "Send `connect` first.",
        ALREADY_CONNECTED: "This socket is already connected; use `switch_character`.",
        AUTH_FAILED: "Unknown or revoked token, or no logged-in session. Closes with 4001.",
        ORIGIN_NOT_ALLOWED: "A cookie-authenticated socket came from a foreign Origin. Closes with 4003.",
        UNKNOWN_CHARACTER: "No published character has that name.",
        EMPTY_MESSAGE: "The message has no text.",
        MESSAGE_TOO_LONG: "The message is over WS_MAX_MESSAGE_CHARS characters.",
        TURN_IN_PROGRESS: "Wait for `turn_end` before sending the next message.",
        LLM_FAILED: "The model failed to write a reply; the turn ends with status `failed`.",
        TURN_TIMEOUT: "No word from the worker for TURN_IDLE_TIMEOUT_S; the turn ends as failed.",
    }


class CloseCode:
    """WebSocket close codes the server uses."""

    AUTH_FAILED = 4001
    ORIGIN_NOT_ALLOWED = 4003
    REPLACED = 4009

    DESCRIPTIONS: ClassVar[dict[int, str]] = {
        AUTH_FAILED: "Authentication failed (after an `error` frame with code `auth_failed`).",
        ORIGIN_NOT_ALLOWED: "Cookie authentication from an Origin that is not allowed.",
        REPLACED: "A newer socket connected with the same API token (after `disconnected`).",
    }
