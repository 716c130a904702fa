"""The local engine's per-session KV cache, with the real SmolLM2: greedy replies are the same with
and without it, later turns prefill only what follows the shared prefix, a changed prefix reuses
no stale keys, a stopped reply leaves a usable cache, and the byte budget holds."""

import statistics
import time

import pytest
from django.conf import settings

from workers.llm.engines import KV_GROW_TOKENS, KvCacheStore, TransformersEngine, kv_cache_length, kv_cache_nbytes

SYSTEM = (
    "You are Nova, a cheerful astronomy guide who loves telling people about stars, planets and "
    "comets. You answer in one or two short sentences and stay in character."
)
USER_LINES = [
    "Hi! What is your name?",
    "What is the brightest star in the night sky?",
    "Can you tell me something about Mars?",
    "Why do stars twinkle?",
]


@pytest.fixture(scope="module")
def greedy():
    """Float32 decoding, so that greedy replies can be compared word for word (see test_int8_decode_*)."""
    return TransformersEngine(
        cache_dir=settings.LLM_CACHE_DIR, temperature=0, max_new_tokens=24, kv_cache_mb=64, decode_int8=False
    )


def converse(engine, *, key, system=SYSTEM, lines=USER_LINES):
    """Each user line in turn, the engine's reply appended to the history; replies and stats per turn."""
    messages, replies, stats = [{"role": "system", "content": system}], [], []
    for line in lines:
        messages.append({"role": "user", "content": line})
        turn = {}
        reply = "".join(engine.stream(messages, cache_key=key, stats=turn))
        messages.append({"role": "assistant", "content": reply})
        replies.append(reply)
        stats.append(turn)
    return replies, stats


@pytest.mark.model
def test_greedy_replies_are_the_same_with_and_without_the_cache(greedy):
    plain, plain_stats = converse(greedy, key=None)
    cached, cached_stats = converse(greedy, key="same-a")
    assert cached == plain
    assert all(s["cached_tokens"] == 0 for s in plain_stats)
    assert cached_stats[0]["cached_tokens"] == 0
    for turn in cached_stats[1:]:  # later turns reuse the whole earlier conversation, or nearly
        assert turn["cached_tokens"] > 0.6 * turn["prompt_tokens"]
        assert turn["prefill_tokens"] == turn["prompt_tokens"] - turn["cached_tokens"]
        assert turn["prefill_tokens"] < 60


@pytest.mark.model
def test_the_same_prompt_again_feeds_only_its_last_token(greedy):
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": USER_LINES[1]}]
    first, again = {}, {}
    reply = "".join(greedy.stream(messages, cache_key="regen", stats=first))
    assert "".join(greedy.stream(messages, cache_key="regen", stats=again)) == reply
    assert again["cached_tokens"] == again["prompt_tokens"] - 1 and again["prefill_tokens"] == 1


@pytest.mark.model
def test_a_users_new_session_starts_from_the_prompt_their_other_session_computed(greedy):
    """The character's part of the prompt is the same in every session: a user's second session
    copies it from their first (the same reply as without it), and leaves the first one whole; another
    user's session, or a key with no user, computes its own."""
    first = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": USER_LINES[0]}]
    second = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": USER_LINES[2]}]
    "".join(greedy.stream(first, cache_key="ann/s1"))
    shared, own, unscoped = {}, {}, {}
    reply = "".join(greedy.stream(second, cache_key="ann/s2", stats=shared))
    assert reply == "".join(greedy.stream(second))
    system_tokens = len(greedy.tokenizer.apply_chat_template(first[:1], tokenize=True))
    assert system_tokens - 2 <= shared["cached_tokens"] < shared["prompt_tokens"]
    assert shared["prefill_tokens"] == shared["prompt_tokens"] - shared["cached_tokens"]

    again = {}
    "".join(greedy.stream(first, cache_key="ann/s1", stats=again))  # the source kept its own whole
    assert again["cached_tokens"] == again["prompt_tokens"] - 1

    "".join(greedy.stream(second, cache_key="bob/s3", stats=own))
    "".join(greedy.stream(second, cache_key="s4", stats=unscoped))
    assert own["cached_tokens"] == 0 and unscoped["cached_tokens"] == 0


@pytest.mark.model
def test_the_kept_keys_are_those_of_a_fresh_prefill_of_the_kept_ids(greedy):
    """Off by one anywhere (crop, ids fed, ids kept) and the positions no longer line up."""
    import torch

    converse(greedy, key="aligned", lines=USER_LINES[:2])  # the second turn crops the first's cache
    ids, cache = greedy.kv_cache.take("aligned")
    assert kv_cache_length(cache) == len(ids)
    with torch.inference_mode():
        fresh = greedy.model(input_ids=torch.tensor([ids]), use_cache=True).past_key_values
    for layer in (0, len(cache.layers) - 1):
        assert torch.allclose(cache.layers[layer].keys, fresh.layers[layer].keys, atol=1e-3)
        assert torch.allclose(cache.layers[layer].values, fresh.layers[layer].values, atol=1e-3)


@pytest.mark.model
def test_a_changed_system_prompt_reuses_no_stale_keys(greedy):
    converse(greedy, key="persona", lines=USER_LINES[:1])
    other = "You are Rex, a grumpy pirate who answers in one short sentence."
    expected, _ = converse(greedy, key=None, system=other, lines=USER_LINES[:2])
    replies, stats = converse(greedy, key="persona", system=other, lines=USER_LINES[:2])
    assert replies == expected
    assert stats[0]["cached_tokens"] < 8  # "<|im_start|>system\nYou are" and no more
    assert stats[1]["cached_tokens"] > 30  # then this persona's own first turn is reused


@pytest.mark.model
def test_a_stopped_reply_leaves_a_cache_the_next_turn_can_use(greedy):
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": USER_LINES[2]}]
    pieces = []
    for piece in greedy.stream(messages, cache_key="stopped", should_stop=lambda: len(pieces) >= 3):
        pieces.append(piece)
    ids, cache = greedy.kv_cache.take("stopped")
    assert kv_cache_length(cache) == len(ids)
    greedy.kv_cache.put("stopped", ids, cache)
    # The cut-off reply goes into the history, as an interrupted turn does.
    follow = messages + [{"role": "assistant", "content": "".join(pieces)}, {"role": "user", "content": "Go on."}]
    stats = {}
    assert "".join(greedy.stream(follow, cache_key="stopped", stats=stats)) == "".join(greedy.stream(follow))
    assert stats["cached_tokens"] > 40

    # A generator dropped half way (the socket went away) also keeps a consistent cache.
    stream = greedy.stream(messages, cache_key="dropped")
    next(stream)
    stream.close()
    ids, cache = greedy.kv_cache.take("dropped")
    assert kv_cache_length(cache) == len(ids) > 40


@pytest.mark.model
def test_prefilled_ahead_the_next_turn_computes_only_its_line(greedy):
    """warm() with what the next prompt begins with (its history, the last reply included, and a
    changed start as when a block of old turns leaves): the next turn then feeds only its own line,
    and writes the same greedy reply as without any cache."""
    history = [{"role": "system", "content": SYSTEM}]
    for line in USER_LINES[:3]:
        history.append({"role": "user", "content": line})
        history.append({"role": "assistant", "content": "".join(greedy.stream(history, cache_key="ahead"))})
    # the oldest turn leaves: the cached keys match up to the system prompt only
    ahead = history[:1] + history[3:]
    computed = greedy.warm(ahead, cache_key="ahead")
    assert computed > 40
    assert greedy.warm(ahead, cache_key="ahead") == 0  # already there: nothing computed twice
    prompt = ahead + [{"role": "user", "content": USER_LINES[3]}]
    stats = {}
    reply = "".join(greedy.stream(prompt, cache_key="ahead", stats=stats))
    assert reply == "".join(greedy.stream(prompt))

    def tokens(messages, **kwargs):
        return greedy.tokenizer.apply_chat_template(messages, return_dict=True, **kwargs)["input_ids"]

    assert stats["cached_tokens"] == len(tokens(ahead))
    assert stats["prefill_tokens"] == len(tokens(prompt, add_generation_prompt=True)) - len(tokens(ahead)) > 5
    ids, cache = greedy.kv_cache.take("ahead")
    assert kv_cache_length(cache) == len(ids)
    assert greedy.warm(ahead, cache_key=None) == 0 and greedy.warm([], cache_key="ahead") == 0


@pytest.mark.model
def test_least_recently_used_sessions_go_first_and_the_budget_holds(greedy):
    config = greedy.model.config
    per_token = (
        config.num_hidden_layers
        * 2
        * config.num_key_value_heads
        * (config.hidden_size // config.num_attention_heads)
        * 4
    )
    assert per_token == 46080  # SmolLM2-135M: the figure LLM_KV_CACHE_MB's default is sized by
    lines = USER_LINES[:1]
    store, greedy.kv_cache = greedy.kv_cache, KvCacheStore(budget_bytes=0)
    try:
        converse(greedy, key="a", lines=lines)
        assert len(greedy.kv_cache) == 0  # a budget of 0 keeps nothing
        greedy.kv_cache = KvCacheStore(budget_bytes=1 << 30)
        converse(greedy, key="a", lines=lines)
        ids, cache = greedy.kv_cache.take("a")
        one = kv_cache_nbytes(cache)
        # real bytes: the tensors' buffers, the room kept ahead of the last token included
        assert len(ids) * per_token < one <= (len(ids) + KV_GROW_TOKENS) * per_token
        greedy.kv_cache = KvCacheStore(budget_bytes=int(2.5 * one))
        for key in ("a", "b", "c"):
            converse(greedy, key=key, lines=lines)
            assert greedy.kv_cache.bytes <= greedy.kv_cache.budget_bytes
        assert "a" not in greedy.kv_cache and "b" in greedy.kv_cache and "c" in greedy.kv_cache
        converse(greedy, key="b", lines=lines)  # b is now the most recently used: d pushes c out
        converse(greedy, key="d", lines=lines)
        assert "b" in greedy.kv_cache and "c" not in greedy.kv_cache and "d" in greedy.kv_cache
        assert greedy.kv_cache.bytes == 2 * one
    finally:
        greedy.kv_cache = store


@pytest.mark.model
def test_figure_first_token_on_a_long_conversation_with_and_without_the_cache(greedy):
    """Time to the first token of turn N once the history fills ~1.4k tokens (prints a FIGURE line)."""
    messages = [{"role": "system", "content": SYSTEM}]
    turn = 0
    while greedy.count_tokens(" ".join(m["content"] for m in messages)) < 1300:
        messages.append({"role": "user", "content": f"{USER_LINES[turn % 4]} Please tell me more, turn {turn}."})
        messages.append(
            {"role": "assistant", "content": "The night sky holds many wonders, from bright stars to faint galaxies."}
        )
        turn += 1

    def first_token_ms(msgs, key):
        t0 = time.perf_counter()
        stream = greedy.stream(msgs, cache_key=key, stats=stats)
        next(stream)
        elapsed = (time.perf_counter() - t0) * 1000
        for _ in stream:  # the whole reply, as a turn does, so the cache holds it too
            pass
        return elapsed

    with_cache, without, stats = [], [], {}
    store, greedy.kv_cache = greedy.kv_cache, KvCacheStore(budget_bytes=512 << 20)  # the default (64 MiB: ~1.4k)
    try:
        for i in range(3):
            history = messages + [{"role": "user", "content": f"And what about comet number {i}?"}]
            first_token_ms(messages[:-1], "long")  # the turn before (its own reply differs from the saved one)
            without.append(first_token_ms(history, None))
            with_cache.append(first_token_ms(history, "long"))
            assert stats["cached_tokens"] > 1000
    finally:
        greedy.kv_cache = store
    print(
        f"\nFIGURE kv_cache ttft_ms prompt_tokens={stats['prompt_tokens']} prefill_tokens={stats['prefill_tokens']} "
        f"without={statistics.median(without):.0f} with={statistics.median(with_cache):.0f}"
    )
    assert statistics.median(with_cache) < statistics.median(without)


@pytest.fixture(scope="module")
def int8():
    return TransformersEngine(cache_dir=settings.LLM_CACHE_DIR, temperature=0, max_new_tokens=24, kv_cache_mb=64)


@pytest.mark.model
def test_int8_decode_keeps_only_float32_prefill_keys(int8):
    """The default on CPU decodes with an int8 copy of the linear layers. Its keys never enter the
    cache: after a reply the cache holds the prompt alone, as a fresh float32 prefill computes it; the
    next turn feeds the reply and its line, and prefilled ahead (as after every reply) only its line.

    (Its greedy replies are not compared with and without the cache: fbgemm quantizes each token's
    activations, so the last-bit differences between a prompt prefilled in one pass or in two can tip
    a near tie to another token. The float32 tests above hold the cache to word-for-word equality.)"""
    import torch

    assert isinstance(int8.decode_model.lm_head, torch.ao.nn.quantized.dynamic.Linear)
    assert int8.decode_model.get_input_embeddings().weight is int8.model.get_input_embeddings().weight
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": USER_LINES[1]}]
    first = {}
    reply = "".join(int8.stream(messages, cache_key="int8", stats=first))
    assert len(reply.split()) > 5
    ids, cache = int8.kv_cache.take("int8")
    assert len(ids) == kv_cache_length(cache) == first["prompt_tokens"]
    with torch.inference_mode():
        fresh = int8.model(input_ids=torch.tensor([ids]), use_cache=True).past_key_values
    for layer in (0, len(cache.layers) - 1):
        assert torch.allclose(cache.layers[layer].keys, fresh.layers[layer].keys, atol=1e-3)
    int8.kv_cache.put("int8", ids, cache)

    follow = messages + [{"role": "assistant", "content": reply}, {"role": "user", "content": USER_LINES[2]}]
    stats = {}
    "".join(int8.stream(follow, cache_key="int8", stats=stats))
    assert stats["cached_tokens"] == first["prompt_tokens"]
    assert stats["prefill_tokens"] > int8.count_tokens(reply)

    ahead = follow + [{"role": "assistant", "content": "Sure."}]
    int8.warm(ahead, cache_key="int8")
    prompt = ahead + [{"role": "user", "content": USER_LINES[3]}]
    stats = {}
    "".join(int8.stream(prompt, cache_key="int8", stats=stats))
    ahead_ids = int8.tokenizer.apply_chat_template(ahead, return_dict=True)["input_ids"]
    assert stats["cached_tokens"] == len(ahead_ids)  # the int8 reply's keys were redone in float32
    assert stats["prefill_tokens"] < int8.count_tokens(USER_LINES[3]) + 12  # the line and its markers


@pytest.mark.model
def test_grouped_attention_gives_the_librarys_logits_after_a_cached_prefix(greedy):
    """The CPU attention (key/value heads grouped, not copied per query head) is the same function as
    transformers' SDPA: a line prefilled after a cached prefix, and a fresh prompt, score alike."""
    import torch

    model = greedy.model
    assert model.config._attn_implementation == "sdpa_grouped"
    prefix = greedy.tokenizer(SYSTEM * 8, return_tensors="pt")["input_ids"]
    line = greedy.tokenizer(" ".join(USER_LINES), return_tensors="pt")["input_ids"]
    logits = {}
    with torch.inference_mode():
        for impl in ("sdpa", "sdpa_grouped"):
            model.config._attn_implementation = impl
            try:
                fresh = model(input_ids=prefix, use_cache=True)
                after = model(input_ids=line, past_key_values=fresh.past_key_values, use_cache=True)
            finally:
                model.config._attn_implementation = "sdpa_grouped"
            logits[impl] = (fresh.logits[0], after.logits[0])
    assert prefix.shape[1] > 200 and line.shape[1] > 20  # a real grouped prefill over a cache, masked
    for ours, theirs in zip(logits["sdpa_grouped"], logits["sdpa"], strict=True):
        assert torch.allclose(ours, theirs, atol=1e-3, rtol=1e-4)
        assert torch.equal(ours.argmax(-1), theirs.argmax(-1))


@pytest.mark.model
def test_a_growing_cache_scores_as_the_librarys_and_decodes_without_copying(greedy):
    """The engine's cache layers write each forward pass's keys into room kept ahead of them: the
    same logits as transformers' DynamicCache (which concatenates, copying the whole cache every
    token), crop included, and a decoded token lands in the same buffer as the ones before it."""
    import torch
    from transformers import DynamicCache

    from workers.llm.engines import growing_kv_cache

    model = greedy.model
    prefix = greedy.tokenizer(SYSTEM * 4, return_tensors="pt")["input_ids"]
    tokens = greedy.tokenizer(" ".join(USER_LINES), return_tensors="pt")["input_ids"][:, :12]  # < KV_GROW_TOKENS
    scores, buffers = {}, []
    with torch.inference_mode():
        for cache in (DynamicCache(), growing_kv_cache()):
            out = model(input_ids=prefix, past_key_values=cache, use_cache=True)
            steps = [out.logits[0, -1]]
            for i in range(tokens.shape[1]):  # token by token, as decoding feeds them
                out = model(input_ids=tokens[:, i : i + 1], past_key_values=cache, use_cache=True)
                steps.append(out.logits[0, -1])
                if type(cache) is not DynamicCache:
                    buffers.append(cache.layers[0].keys.untyped_storage().data_ptr())
            cache.crop(-5)  # a reply's last tokens dropped, then a different line fed after it
            out = model(input_ids=tokens[:, :7], past_key_values=cache, use_cache=True)
            steps.append(out.logits[0, -1])
            assert kv_cache_length(cache) == prefix.shape[1] + tokens.shape[1] - 5 + 7
            scores[type(cache) is DynamicCache] = steps
    for ours, theirs in zip(scores[False], scores[True], strict=True):
        assert torch.allclose(ours, theirs, atol=1e-4, rtol=1e-4)
    assert len(buffers) == tokens.shape[1] and len(set(buffers)) == 1  # never copied to a new buffer


def test_a_growing_cache_keeps_the_librarys_layers_where_a_model_needs_them():
    """Only full-attention layers grow in place: a sliding-window layer of a model's config stays the
    library's (it must drop what slides out, not keep it)."""
    from transformers import Qwen2Config
    from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

    from workers.llm.engines import growing_kv_cache

    config = Qwen2Config(
        num_hidden_layers=3,
        layer_types=["sliding_attention", "full_attention", "sliding_attention"],
        use_sliding_window=True,
        sliding_window=8,
    )
    layers = growing_kv_cache(config).layers
    assert [type(layer) is DynamicSlidingWindowLayer for layer in layers] == [True, False, True]
    assert isinstance(layers[1], DynamicLayer) and type(layers[1]) is not DynamicLayer  # the growing one
