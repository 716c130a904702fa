"""A reply's last frames reach the socket in one channel message: one round trip to Redis per turn
fewer for the llm worker, and the socket never holds an `llm_end` whose `turn_end` is still on its way."""

import pytest

from apps.conversations.services import session_create
from apps.core.errors import EngineError
from apps.realtime import protocol as p
from tests.conversations.replies import reply_to
from workers.llm.engines import ScriptedEngine

pytestmark = pytest.mark.django_db


class FailingEngine(ScriptedEngine):
    def stream(self, messages, **_):
        yield "Well"
        raise EngineError("the server went away")


@pytest.fixture
def sent(settings):
    settings.MEMORY_EXTRACTION, settings.LLM_PREFILL_AHEAD = False, False
    return []


def kinds(event) -> list[str]:
    return [frame.type for frame in p.TurnFrames.model_validate(event).frames]


def test_a_finished_reply_ends_with_llm_end_and_turn_end_in_one_message(user, character, sent):
    session = session_create(user=user, character=character)
    reply = reply_to(session, "hello", engine=ScriptedEngine(), text_deltas=True, send=lambda c, e: sent.append(e))
    assert reply.status == "complete"
    assert kinds(sent[-1]) == ["llm_end", "turn_end"]
    assert all("turn_end" not in kinds(event) for event in sent[:-1])


def test_a_failed_reply_ends_with_the_error_llm_end_and_turn_end_in_one_message(user, character, sent):
    session = session_create(user=user, character=character)
    reply = reply_to(session, "hello", engine=FailingEngine(), text_deltas=True, send=lambda c, e: sent.append(e))
    assert reply.status == "failed"
    assert kinds(sent[-1]) == ["error", "llm_end", "turn_end"]
    [error] = [f for f in p.TurnFrames.model_validate(sent[-1]).frames if f.type == "error"]
    assert error.code == p.ErrorCode.LLM_FAILED and "server went away" in error.message
