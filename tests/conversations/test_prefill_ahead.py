"""Prefilling ahead with the real SmolLM2: a socket opening a session queues `llm_prefill`, which
computes the prompt's start (system prompt, greeting) before the first turn; that turn then feeds
the engine only its own line and writes the same greedy reply as without it. After each reply the
job prefills the next prompt's start, and the next turn reuses all of it."""

import uuid

import pytest
from django.conf import settings
from django.test import override_settings

from apps.characters.demo import DEMO_CHARACTERS
from apps.conversations.services import session_create
from apps.conversations.turns import prompt_prefill
from tests.conversations.replies import reply_to
from workers.llm.engines import TransformersEngine

NOVA = next(c for c in DEMO_CHARACTERS if c["slug"] == "nova")


@pytest.fixture(scope="module")
def greedy():
    """Float32 decoding: replies are compared word for word with and without the cache (the int8 copy can
    tip near ties on last-bit differences; tests/workers/test_llm_kv_cache.py covers its cache)."""
    return TransformersEngine(
        cache_dir=settings.LLM_CACHE_DIR, temperature=0, max_new_tokens=20, kv_cache_mb=64, decode_int8=False
    )


@pytest.fixture
def nova(db):
    from apps.characters.models import Character

    return Character.objects.create(**NOVA, is_published=True)


@pytest.mark.model
@pytest.mark.django_db
@override_settings(MEMORY_EXTRACTION=False, LLM_PREFILL_AHEAD=True)
def test_a_prefilled_session_feeds_its_first_turn_only_its_line(greedy, nova, user, django_user_model):
    cold = session_create(user=user, character=nova)
    plain = reply_to(cold, "What is a comet made of?", engine=greedy)
    assert plain.timings["cached_tokens"] == 0  # nothing computed for this session before

    other = django_user_model.objects.create_user(username="other")  # shares nothing computed for `user`
    warm = session_create(user=other, character=nova)
    computed = prompt_prefill(session_id=str(warm.pk), engine=greedy)
    assert computed > 100  # the persona, the example dialogue and the greeting
    first = reply_to(warm, "What is a comet made of?", engine=greedy)
    assert first.content == plain.content
    assert first.timings["cached_tokens"] == computed
    assert first.timings["prefill_tokens"] < 30  # the user's line and the reply's opening
    assert prompt_prefill(session_id=str(warm.pk), engine=greedy) == 0  # already done after the reply

    # after each reply the next prompt's start is computed: the next turn reuses all of it
    assert first.timings["prefill_ahead_tokens"] > 0  # the reply's end: what it wrote is in the cache already
    second = reply_to(warm, "And where do comets come from?", engine=greedy)
    assert second.timings["cached_tokens"] > first.timings["prompt_tokens"]  # the first prompt and its reply
    assert second.timings["prefill_tokens"] < 30
    assert prompt_prefill(session_id=str(uuid.uuid4()), engine=greedy) == 0  # a session that is gone

    # the user's own new session starts from what their first one computed: nothing to prefill
    again = session_create(user=user, character=nova)
    assert prompt_prefill(session_id=str(again.pk), engine=greedy) == 0
    same = reply_to(again, "What is a comet made of?", engine=greedy)
    assert same.content == plain.content and same.timings["cached_tokens"] >= computed


@pytest.mark.django_db
def test_opening_a_session_queues_its_prefill_for_the_local_engine_only(
    nova, user, monkeypatch, django_capture_on_commit_callbacks
):
    from django.core.cache import cache

    from apps.conversations import turns
    from apps.realtime.services import conversation_open

    cache.delete(f"llm-prefill-asked:{user.pk}")  # the cache outlives a test's database
    queued = []
    monkeypatch.setattr(turns, "enqueue", lambda name, **kwargs: queued.append((name, kwargs)))
    with override_settings(LLM_BACKEND="transformers", LLM_PREFILL_AHEAD=True):
        with django_capture_on_commit_callbacks(execute=True):
            opened = conversation_open(user=user, character_name="Nova", new_session=True)
            for _ in range(20):  # a client clearing its history in a loop gets no more for a while
                conversation_open(user=user, character_name="Nova", new_session=True)
        assert [(name, kwargs["session_id"]) for name, kwargs in queued] == [
            ("workers.llm.tasks.llm_prefill", str(opened.session.pk))
        ]
    cache.delete(f"llm-prefill-asked:{user.pk}")  # the next checks start with the user's allowance
    for other in ({"LLM_BACKEND": "openai"}, {"LLM_BACKEND": "transformers", "LLM_PREFILL_AHEAD": False}):
        with override_settings(**other), django_capture_on_commit_callbacks(execute=True):
            conversation_open(user=user, character_name="Nova")
    assert len(queued) == 1  # a server keeps its own prefix cache; or prefilling ahead is off


@pytest.mark.model
def test_a_prefill_ahead_stopped_half_way_keeps_a_prefix_the_turn_builds_on(greedy):
    from workers.llm.engines import WARM_CHUNK_TOKENS, kv_cache_length

    messages = [{"role": "system", "content": NOVA["persona"]}, {"role": "assistant", "content": NOVA["greeting"]}]
    for planet in ("Mercury", "Venus", "Mars", "Jupiter", "Saturn", "Uranus"):  # more than one chunk in all
        messages.append({"role": "user", "content": f"Tell me about {planet}, please: how big is it?"})
        messages.append({"role": "assistant", "content": f"{planet} is a planet of our solar system, and a fine one."})
    asked = []
    computed = greedy.warm(messages, cache_key="halfway", should_stop=lambda: asked.append(1) or len(asked) > 1)
    assert computed == WARM_CHUNK_TOKENS  # one chunk, then it gave way
    ids, cache = greedy.kv_cache.take("halfway")
    assert kv_cache_length(cache) == len(ids) == WARM_CHUNK_TOKENS
    greedy.kv_cache.put("halfway", ids, cache)
    prompt = messages + [{"role": "user", "content": "What is a comet made of?"}]
    stats = {}
    assert "".join(greedy.stream(prompt, cache_key="halfway", stats=stats)) == "".join(greedy.stream(prompt))
    assert stats["cached_tokens"] == WARM_CHUNK_TOKENS


@pytest.mark.model
def test_the_prefill_ahead_takes_in_the_next_turns_opening_and_a_turn_opening_otherwise_still_uses_the_rest(greedy):
    messages = [{"role": "system", "content": NOVA["persona"]}, {"role": "assistant", "content": NOVA["greeting"]}]
    plain = greedy.tokenizer.apply_chat_template(messages, return_dict=True)["input_ids"]
    assert greedy.warm(messages, cache_key="opening", then="user") == len(plain) + 3
    ids, cache = greedy.kv_cache.take("opening")
    assert greedy.tokenizer.decode(ids[len(plain) :]) == "<|im_start|>user\n"  # SmolLM2's ChatML
    greedy.kv_cache.put("opening", ids, cache)
    for key, then in (("opening", "user"), ("lore first", "system")):
        if key != "opening":
            greedy.warm(messages, cache_key=key, then="user")
        prompt = [*messages, {"role": then, "content": "The Moon is 384,400 km away."}]
        prompt += [{"role": "user", "content": "How far is the Moon?"}] if then == "system" else []
        stats = {}
        assert "".join(greedy.stream(prompt, cache_key=key, stats=stats)) == "".join(greedy.stream(prompt))
        # all of it for a user's turn; up to `<|im_start|>` for a system message (the cache is cut there)
        assert stats["cached_tokens"] == len(plain) + (3 if then == "user" else 1), (then, stats)


@pytest.mark.django_db
@override_settings(MEMORY_EXTRACTION=False, LLM_PREFILL_AHEAD=True)
def test_a_reply_queued_meanwhile_stops_the_prefill_ahead_of_the_one_before(
    nova, user, monkeypatch, django_capture_on_commit_callbacks
):
    """The job that wrote turn N prefills for turn N+1 until turn N+1's own job is queued."""
    from apps.conversations import turns
    from workers.llm.engines import ScriptedEngine

    monkeypatch.setattr(turns, "enqueue", lambda name, **kwargs: None)  # the next turn's job, not run here
    session = session_create(user=user, character=nova)

    class Warming(ScriptedEngine):
        def warm(self, messages, *, cache_key, should_stop=lambda: False, then=None):
            self.stops = [should_stop()]
            with django_capture_on_commit_callbacks(execute=True):
                turns.text_turn_submit(session=session, content="next line", reply_channel="x", text_deltas=False)
            self.stops.append(should_stop())
            return 1

    engine = Warming()
    reply_to(session, "What is a comet made of?", engine=engine)
    assert engine.stops == [False, True]  # its own turn's queueing did not count; the next one's did
