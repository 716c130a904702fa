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
