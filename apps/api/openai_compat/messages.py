"""An OpenAI client's `messages`, read as PersonaTalk reads a turn: the client's instructions, the
conversation so far, and the new line.

- `system` and `developer` messages are the client's own instructions, kept for this turn (in the
  prompt's tail; the character's persona stays first);
- `user` and `assistant` messages are the conversation; the LAST one must be the user's: it is the
  new turn, and the ones before it are the history a session must hold (apps/conversations
  `session_for_client_history`);
- `tool` and `function` messages, and assistant messages with no text (tool calls), are left out;
- content is a string or a list of parts, of which only `text` parts are taken (others are refused).
"""

from dataclasses import dataclass

from apps.api.openai_compat.errors import CompatError
from apps.realtime import protocol as p

MAX_MESSAGES = 1000  # per request: the history a client may send, and we may import, at once
_INSTRUCTIONS = ("system", "developer")
_CONVERSATION = ("user", "assistant")
_LEFT_OUT = ("tool", "function")


@dataclass(frozen=True)
class ClientChat:
    instructions: str  # the client's system messages, joined
    history: list[tuple[str, str]]  # (role, content) before the new line, oldest first
    line: str  # the user's new line


def _text(content, at: int) -> str | None:
    """The text of a message's content: a string, or the `text` parts of a list joined by newlines."""
    if content is None or isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise CompatError(
            400,
            "`content` is a string or a list of parts.",
            code=p.ErrorCode.INVALID_FIELD,
            param=f"messages[{at}].content",
        )
    texts = []
    for part in content:
        if isinstance(part, str):
            texts.append(part)
        elif isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        else:
            raise CompatError(
                400,
                "Only text content is supported (parts of type `text`).",
                code=p.ErrorCode.INVALID_FIELD,
                param=f"messages[{at}].content",
            )
    return "\n".join(texts)


def client_chat(messages) -> ClientChat:
    """Read `messages` (validated as a list by the caller); CompatError 400 naming the message at fault."""
    if not messages:
        raise CompatError(
            400, "`messages` must hold at least one message.", code=p.ErrorCode.MISSING_FIELD, param="messages"
        )
    if len(messages) > MAX_MESSAGES:
        raise CompatError(
            400, f"`messages` is limited to {MAX_MESSAGES} messages.", code=p.ErrorCode.INVALID_FIELD, param="messages"
        )
    instructions, conversation = [], []
    for at, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in _INSTRUCTIONS + _CONVERSATION + _LEFT_OUT:
            raise CompatError(
                400,
                "A message's `role` is system, developer, user, assistant or tool.",
                code=p.ErrorCode.INVALID_FIELD,
                param=f"messages[{at}].role",
            )
        text = _text(message.get("content"), at)
        if role in _LEFT_OUT or not (text or "").strip():
            continue
        if role in _INSTRUCTIONS:
            instructions.append(text.strip())
        else:
            conversation.append((role, text))
    if not conversation or conversation[-1][0] != "user":
        raise CompatError(
            400,
            "The last message must be the user's: it is what the character answers.",
            code=p.ErrorCode.INVALID_FIELD,
            param="messages",
        )
    return ClientChat(instructions="\n\n".join(instructions), history=conversation[:-1], line=conversation[-1][1])
