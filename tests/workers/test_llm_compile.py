"""LLM_COMPILE: the local engine decoding through torch.compile with a static KV cache.

Compiling SmolLM2-135M takes minutes on this box's two cores, so these run a small model of the same
architecture (Llama: 2 layers, 64 wide, seeded random weights) with SmolLM2's own tokenizer and chat
template: what is checked is the path (static cache, positions, the compiled step, the fallback), the
same for any size. Greedy decoding, so compiled and eager replies must agree token for token.
"""

import pytest
from django.conf import settings

from workers.llm.engines import TransformersEngine, converted_model_dir, default_gguf_path

CHAT = [
    {"role": "system", "content": "You are Nova, a cheerful astronomy guide."},
    {"role": "user", "content": "Hi! What is your name?"},
]
ROOM = 256  # the static cache's tokens


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("small-llama")
    tokenizer = AutoTokenizer.from_pretrained(converted_model_dir(default_gguf_path(), settings.LLM_CACHE_DIR))
    tokenizer.save_pretrained(folder)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        eos_token_id=tokenizer.eos_token_id,
        initializer_range=0.5,  # weights large enough that attention, so every position, moves the reply
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


def engine(folder, **kwargs):
    kwargs = {"temperature": 0, "max_new_tokens": 24, "decode_int8": False, **kwargs}
    return TransformersEngine(model_path=folder, cache_dir=settings.LLM_CACHE_DIR, **kwargs)


@pytest.fixture(scope="module")
def compiled(small_model):
    # Asked for the prefix cache and the int8 decode copy too: compiling turns both off (the replies
    # could not match the float32 eager ones otherwise).
    return engine(small_model, compile_tokens=ROOM, kv_cache_mb=64, decode_int8=True)


def unique_graphs() -> int:
    from torch._dynamo.utils import counters

    return counters["stats"]["unique_graphs"]


def reply(eng, messages, **kwargs) -> tuple[str, dict]:
    stats = {}
    return "".join(eng.stream(messages, stats=stats, **kwargs)), stats


@pytest.mark.model
def test_compiled_replies_are_the_eager_ones(small_model, compiled):
    eager = engine(small_model)
    assert compiled.compile_s > 0 and unique_graphs() > 0  # compiled when built, as a worker at start
    assert compiled.kv_cache is None and compiled.decode_model is compiled.model
    longer = [*CHAT, {"role": "assistant", "content": "I am Nova."}, {"role": "user", "content": "Tell me of Mars."}]
    wanted = []
    for messages in (CHAT, longer, CHAT):  # prompts of other lengths: the cache is reset between turns
        want, want_stats = reply(eager, messages)
        got, stats = reply(compiled, messages)
        assert got == want and stats["completion_tokens"] == want_stats["completion_tokens"] > 10
        # ...and it ran on the static cache: it holds the prompt and the reply but its last token
        assert int(compiled.static_cache.get_seq_length()) == stats["prompt_tokens"] + stats["completion_tokens"] - 1
        wanted.append(want)
    assert wanted[0] != wanted[1]  # the reply depends on what came before it, so on the cache


@pytest.mark.model
def test_turns_after_the_start_compile_nothing_more(compiled):
    before = unique_graphs()
    reply(compiled, CHAT)
    reply(compiled, [*CHAT, {"role": "assistant", "content": "Nova."}, {"role": "user", "content": "And you?"}])
    assert unique_graphs() == before


@pytest.mark.model
def test_a_turn_longer_than_the_static_cache_decodes_eagerly(small_model, compiled):
    eager = engine(small_model)
    long = [*CHAT[:1], {"role": "user", "content": "Tell me about the stars. " * 45}]
    assert eager.count_tokens(long[1]["content"]) + 24 > ROOM
    reply(compiled, CHAT)
    held = int(compiled.static_cache.get_seq_length())
    want, want_stats = reply(eager, long)
    got, stats = reply(compiled, long)  # the static cache would overflow: it runs on a dynamic one
    assert got == want and stats["completion_tokens"] == want_stats["completion_tokens"] > 10
    assert int(compiled.static_cache.get_seq_length()) == held  # left as the short turn left it


@pytest.mark.model
def test_a_second_stream_meanwhile_decodes_without_the_static_cache(small_model, compiled):
    eager = engine(small_model)
    first = compiled.stream(CHAT)
    started = next(first)  # the first stream holds the static cache...
    other, _ = reply(compiled, CHAT[:1] + [{"role": "user", "content": "And you?"}])  # ...so this one cannot
    assert other == reply(eager, CHAT[:1] + [{"role": "user", "content": "And you?"}])[0]
    assert started + "".join(first) == reply(eager, CHAT)[0]  # the first one's cache was not touched
