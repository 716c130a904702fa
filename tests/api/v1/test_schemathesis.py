"""Schemathesis against the live schema: real HTTP requests to a Daphne serving the project, as alice,
while bob's session, messages, memory, job and token exist.

Every operation of /api/v1/schema (the old, deprecated paths too) gets generated requests, valid and
invalid: no answer may be a server error or break the schema (status, content type, body), a
protected one must refuse a request without the key, and no answer may hold anything of bob's. Path
parameters are drawn from alice's ids, bob's ids and made-up ones, and searches look for bob's words.

Left out: the operations that start model work per request (text to speech and the upload of
speech to text, v1 and old), which tests/api/v1/test_speech.py covers with the real worker. Memory
searches run, on a real embed worker (a query embeds in milliseconds), and so do text turns (REST and
OpenAI-compatible), on a real LLM worker with the deterministic engine.
"""

import re
from collections import Counter
from types import SimpleNamespace

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from apps.accounts.services import token_create
from apps.conversations.models import AsrJob
from apps.conversations.services import session_create
from tests import stack
from tests.api.v1.conftest import exchange
from tests.conftest import LOG_DIR

pytestmark = pytest.mark.django_db(transaction=True)

MODEL_WORK = r"^/api/(v1/)?(tts|asr)$|^/api/v1/asr/jobs$"
POOLS: dict[str, list] = {}  # path and query parameter -> values to draw from (this run's ids)
LEAKS: list[str] = []  # what of bob's no answer to alice may hold
STATUSES: dict[str, Counter] = {}  # operation -> statuses of the valid requests sent


@pytest.fixture(scope="module")
def api_server(live_env):
    proc, url = stack.start_daphne(env=live_env, log_dir=LOG_DIR)
    yield url
    proc.stop()


@pytest.fixture
def api_schema(api_server, memory_worker, llm_worker, alice, bob, character, draft_character):
    second = session_create(user=alice.user, character=character)
    exchange(second, "Which planet has the most moons?", "Saturn, at last count.")
    alice_job = AsrJob.objects.create(user=alice.user, status="done", text="one two three", language="en")
    bob_job = AsrJob.objects.create(user=bob.user, status="done", text="zucchini again", language="en")
    spare = token_create(user=alice.user, name="spare")  # revocable; the fuzzer's own key is never drawn
    bob_token = bob.user.api_tokens.get()
    made_up = "00000000-0000-0000-0000-000000000000"
    POOLS.clear()
    POOLS.update(
        session_id=[str(alice.session.pk), str(second.pk), str(bob.session.pk), made_up],
        memory_id=[str(alice.memory.pk), str(bob.memory.pk), made_up],
        job_id=[str(alice_job.pk), str(bob_job.pk), made_up],
        token_id=[spare.token.pk, bob_token.pk, 999999],
        name=["nova", "draft", "nobody"],
        character=["nova", "draft", "nobody"],
        q=["zucchini", "cello", "moons", "secret word"],
    )
    LEAKS[:] = [
        "zucchini",
        str(bob.session.pk),
        str(bob.memory.pk),
        str(bob_job.pk),
        bob.key,
        bob_token.prefix,
        *(str(m.pk) for m in bob.session.messages.all()),
    ]
    config = schemathesis.Config.from_dict(
        {
            "headers": {"Authorization": f"Bearer {alice.key}"},
            # Text as PostgreSQL stores it: the API refuses NUL and lone surrogates (400), as its text
            # fields say; asking for none keeps valid requests valid.
            "generation": {"max-examples": 12, "allow-x00": False, "codec": "utf-8"},
            "phases": {"coverage": {"enabled": False}, "stateful": {"enabled": False}},
        }
    )
    return schemathesis.openapi.from_url(f"{api_server}/api/v1/schema", config=config)


def with_our_ids(case, data) -> None:
    """A valid case, pointed at this run's objects: path parameters drawn from alice's, bob's and made-up
    ids, and some searches for words of theirs (invalid cases are sent as generated)."""
    for name in list(case.path_parameters or {}):
        if name in POOLS:
            case.path_parameters[name] = data.draw(st.sampled_from(POOLS[name]), label=name)
    for name in ("q", "character"):
        if case.query and isinstance(case.query.get(name), str) and data.draw(st.booleans(), label=f"pool {name}"):
            case.query[name] = data.draw(st.sampled_from(POOLS[name]), label=name)
    body = case.body if isinstance(case.body, dict) else {}
    if case.path == "/v1/chat/completions" and body.get("messages"):  # a turn is the user's last line, said
        said = body["messages"][-1].get("content")
        body["messages"][-1] = {"role": "user", "content": said if isinstance(said, str) and said.strip() else "hi"}
        body["model"] = data.draw(st.sampled_from(POOLS["name"]), label="model")
    if case.path.endswith("/turns"):  # the reply's speech is model work (tests/api/test_turns.py has it)
        body["audio"] = False
    if case.path == "/api/memories" and case.query and case.query.get("q"):  # `q` needs `character` (documented)
        case.query["character"] = case.query.get("character") or "nova"


def nothing_of_bobs(ctx, response, case):
    """No answer to alice holds bob's ids, key or words."""
    body = response.content.decode("utf-8", "replace")
    headers = " ".join(f"{k}: {v}" for k, v in response.headers.items())
    found = [leak for leak in LEAKS if re.search(re.escape(leak), body + headers, re.I)]
    assert not found, f"{case.method} {case.formatted_path} answered with bob's {found}"


def fuzz(operation, mode: GenerationMode, examples: int) -> None:
    """Send `examples` generated requests of `mode` to `operation`; raises what the checks found."""

    @given(case=operation.as_strategy(generation_mode=mode), data=st.data())
    @settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,  # the same requests every run: a failure here is a failure there
        database=None,
        phases=[Phase.generate],  # the first failure is reported as found, not shrunk
    )
    def run(case, data):
        if mode == GenerationMode.POSITIVE:
            with_our_ids(case, data)
        response = case.call_and_validate(additional_checks=[nothing_of_bobs], timeout=30)
        if mode == GenerationMode.POSITIVE:
            STATUSES.setdefault(operation.label, Counter())[response.status_code] += 1

    run()


def test_the_api_keeps_its_schema_and_its_users_apart(api_schema):
    """Each operation, with valid and invalid requests; every failure is collected, then reported at once.

    (Driven here rather than by `schema.parametrize()`: schemathesis' lazy pytest loader reaches into
    pytest internals that pytest 9 no longer has.)
    """
    failures, ran = [], set()
    operations = [
        result.ok() for result in api_schema.exclude(path_regex=MODEL_WORK, method="POST").get_all_operations()
    ]
    for operation in sorted(operations, key=lambda op: (op.method.upper() == "DELETE", op.label)):  # deletes last
        for mode, examples in ((GenerationMode.POSITIVE, 25), (GenerationMode.NEGATIVE, 10)):
            try:
                fuzz(operation, mode, examples)
            except Unsatisfiable:
                pass  # nothing about this operation's input can be invalid (a name that is any text)
            except (Exception, BaseExceptionGroup) as exc:  # every operation's failures, not the first one's
                failures.append(f"{operation.label} ({mode.value}): {exc}")
            ran.add(operation.label)
    assert len(ran) >= 20  # the schema still lists the operations (less the excluded model work)
    assert not failures, "\n\n".join(failures)
    # The valid requests reached real objects, alice's (found) and bob's (not found), not only made-up ids.
    for label in ("GET /api/v1/sessions/{session_id}", "GET /api/v1/sessions/{session_id}/messages"):
        assert STATUSES[label][200] and STATUSES[label][404], (label, STATUSES[label])
    assert STATUSES["GET /api/v1/asr/jobs/{job_id}"][404], STATUSES


def test_the_leak_check_catches_a_leak():
    LEAKS[:] = ["zucchini"]
    leaked = SimpleNamespace(content=b'{"text": "ZUCCHINI"}', headers={})
    case = SimpleNamespace(method="GET", formatted_path="/api/v1/memories")
    with pytest.raises(AssertionError, match="bob's"):
        nothing_of_bobs(None, leaked, case)
    nothing_of_bobs(None, SimpleNamespace(content=b'{"text": "cello"}', headers={}), case)
