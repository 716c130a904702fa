from pathlib import Path

from apps.realtime import protocol as p
from apps.realtime.docs import render

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def test_protocol_doc_is_generated_from_the_frame_classes():
    assert DOC.read_text() == render(), "docs/protocol.md is stale: run `make docs`"


def test_every_frame_and_error_code_is_documented():
    text = DOC.read_text()
    for cls in [*p.CLIENT_FRAMES.values(), *p.SERVER_FRAMES]:
        assert (cls.__doc__ or "").strip(), f"{cls.__name__} has no docstring"
    for code in p.ErrorCode.DESCRIPTIONS:
        assert f"`{code}`" in text
    codes = {v for k, v in vars(p.ErrorCode).items() if k.isupper() and isinstance(v, str)}
    assert codes == set(p.ErrorCode.DESCRIPTIONS)


def test_server_frames_and_events_refuse_what_the_protocol_does_not_define():
    """A misspelled field or an unregistered error code fails where the frame is built, not in a client."""
    import pytest
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="extra"):
        p.Response(content="Hi.", content_cn="Hi.", emotion="happy", contents="Hi.")
    with pytest.raises(ValidationError, match="ErrorCode"):
        p.Error(code="llm_broke", message="no")
    with pytest.raises(ValidationError):  # a worker's raw frame with a field no class has
        p.TurnFrames.model_validate(
            {"type": "turn.frames", "turn_id": "t", "frames": [{"type": "llm_end", "units": 3}]}
        )
    with pytest.raises(ValidationError):  # an unknown frame type inside an event
        p.TurnUnit.model_validate(
            {"type": "turn.unit", "turn_id": "t", "seq": 0, "last": True, "frames": [{"type": "x"}]}
        )
    p.Connect.model_validate({"type": "connect", "character_name": "nova", "client_version": "chatanon-1"})  # lenient


def test_each_client_frame_has_one_section_naming_its_aliases():
    text = DOC.read_text()
    for name, cls in p.CLIENT_FRAMES.items():
        first, *aliases = cls.model_fields["type"].annotation.__args__
        assert text.count(f"### `{name}`") == (name == first), name  # aliases have no section of their own
        section = text.split(f"### `{first}`", 1)[1].split("\n### ", 1)[0]
        for alias in aliases:
            assert f"`{alias}`" in section, (first, alias)
    assert "Also accepted as `agent_mode_start`" in text


def test_every_event_is_documented():
    for cls in p.EVENTS:
        assert (cls.__doc__ or "").strip(), f"{cls.__name__} has no docstring"
