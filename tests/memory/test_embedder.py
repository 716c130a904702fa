"""A turn's query takes a short path through the model; it must land where the memories' vectors are."""

import json
import shutil
import threading
import time

import numpy as np
import pytest

from workers.embed.engine import DEFAULT_MODEL, Embedder, get_embedder, model_dir

LINES = [
    "Where do I live?",
    "",
    "WHAT did I say about JAZZ, hm?",
    "Ça va ? J'habite à Lisbonne — 東京にも住んでいました 🎷",
    "I told you about my sister's cat, Miso, who is afraid of the vacuum cleaner. " * 30,  # past 256 tokens
]


MEMORIES = [
    "The user lives in Lisbon.",
    "The user's sister has a cat called Miso.",
    "The user plays the saxophone in a jazz band.",
    "The user is allergic to peanuts.",
    "The user works as a nurse on night shifts.",
    "The user wants to visit Tokyo next spring.",
    "The user's favourite tea is genmaicha.",
    "The user ran a marathon last October.",
]
QUERIES = ["Where do I live?", "What did I say about my sister's pet?", "Any music in my life?", "What can't I eat?"]


def test_a_turns_query_is_embedded_exactly_as_the_memories_are_in_float32():
    embedder = Embedder(DEFAULT_MODEL, query_precision="float32")
    assert embedder.fast_queries  # the shipped model takes the short path (retrieval's latency depends on it)
    assert embedder._query.precision == "float32"
    batch = embedder.encode(LINES)
    for line, expected in zip(LINES, batch, strict=True):
        assert np.abs(embedder.encode_query(line) - expected).max() < 1e-5, line
    assert embedder.encode_query(LINES[0]) @ embedder.encode_query("In which city is my home?") > 0.5


def test_a_query_in_bfloat16_recalls_the_memories_float32_does_in_the_same_order():
    """Half the bytes of weights to read after a user's pause; the memories found must not change."""
    exact, low = Embedder(DEFAULT_MODEL, query_precision="float32"), Embedder(DEFAULT_MODEL, query_precision="bfloat16")
    assert low._query.precision == "bfloat16"
    for line, expected in zip(LINES, low.encode(LINES), strict=True):
        vector = low.encode_query(line)
        assert vector.dtype == np.float32 and abs(float(np.linalg.norm(vector)) - 1) < 1e-5
        assert vector @ expected >= 0.9999, line
        assert np.abs(vector - expected).max() > 1e-6 or not line  # really another computation
    memories = exact.encode(MEMORIES)
    for query in QUERIES:
        want, got = memories @ exact.encode_query(query), memories @ low.encode_query(query)
        assert list(np.argsort(-got)) == list(np.argsort(-want)), query
        assert np.abs(got - want).max() < 1e-3, query


def test_auto_precision_is_bfloat16_only_where_the_cpu_computes_it(monkeypatch):
    import torch

    native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    assert get_embedder(DEFAULT_MODEL)._query.precision == ("bfloat16" if native else "float32")
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert Embedder(DEFAULT_MODEL, query_precision="auto")._query.precision == "float32"  # emulated: slower


def test_a_bfloat16_encoder_that_points_elsewhere_falls_back_to_float32(monkeypatch, caplog):
    from workers.embed import query

    monkeypatch.setattr(query, "LOW_PRECISION_MIN_COSINE", 1.01)  # no vector can meet it
    embedder = Embedder(DEFAULT_MODEL, query_precision="bfloat16")
    assert embedder._query.precision == "float32"
    assert "point away from float32" in caplog.text


def test_a_bfloat16_encoder_that_cannot_run_falls_back_to_float32s_short_path(monkeypatch):
    """A torch or device where the bfloat16 graph fails: queries keep the float32 short path."""
    from workers.embed import bert_script

    scripted = bert_script.scripted

    def no_bfloat16(bert, low_precision=None):
        if low_precision is not None:
            raise RuntimeError("no bfloat16 matmul here")
        return scripted(bert, low_precision)

    monkeypatch.setattr(bert_script, "scripted", no_bfloat16)
    embedder = Embedder(DEFAULT_MODEL, query_precision="bfloat16")
    assert embedder.fast_queries and embedder._query.precision == "float32"


def test_an_unknown_query_precision_is_a_configuration_error():
    from apps.core.errors import EngineConfigError

    with pytest.raises(EngineConfigError, match="EMBED_QUERY_PRECISION"):
        Embedder(DEFAULT_MODEL, query_precision="float8")


def test_without_torchscript_queries_go_through_sentence_transformers_with_the_same_vectors(monkeypatch):
    from workers.embed import bert_script

    def gone(*args, **kwargs):  # as a torch without torch.jit.script would answer
        raise RuntimeError("torch.jit.script is no more")

    monkeypatch.setattr(bert_script, "scripted", gone)
    embedder = Embedder(DEFAULT_MODEL)
    assert not embedder.fast_queries
    batch = embedder.encode(LINES)
    for line, expected in zip(LINES, batch, strict=True):
        assert np.abs(embedder.encode_query(line) - expected).max() < 1e-5, line


def test_a_model_of_another_layout_is_queried_through_sentence_transformers(tmp_path):
    """CLS pooling is not the layout the short path knows: queries must still match that model's batches."""
    copy = tmp_path / "minilm-cls"
    shutil.copytree(model_dir(DEFAULT_MODEL), copy)
    (copy / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": 384, "pooling_mode_cls_token": True})
    )
    embedder = Embedder(str(copy))
    assert not embedder.fast_queries
    expected = embedder.encode(LINES[:3])
    for line, want in zip(LINES[:3], expected, strict=True):
        assert np.abs(embedder.encode_query(line) - want).max() < 1e-5
    assert np.abs(expected[0] - get_embedder(DEFAULT_MODEL).encode_query(LINES[0])).max() > 1e-3  # really CLS


def test_queries_asked_at_once_are_encoded_together_on_one_thread_and_each_gets_its_own_vector(monkeypatch):
    """An LLM worker streaming many turns asks for their queries at once: one batch, not a queue, through
    the short path's graph (one release of the GIL for all; sentence-transformers' eager batch took
    it per torch call), on one torch thread (with the other core busy, two took 31 ms for 8 queries
    against 20 on one). Each vector is its line's alone, however long the others (padding is masked)."""
    import torch

    embedder = get_embedder(DEFAULT_MODEL)
    lines = [f"What did I tell you about {topic}?" for topic in ("jazz", "my sister", "Lisbon", "the cat", "tea")]
    lines.append(LINES[-1])  # past 256 tokens: the others are padded to its length
    alone = {line: embedder._query(line) for line in lines}
    expected = embedder.encode(lines)
    batches, results, seen = embedder.query_batches, {}, []
    many = embedder._query.many

    def recorded(texts):
        seen.append((len(texts), torch.get_num_threads()))
        return many(texts)

    monkeypatch.setattr(embedder._query, "many", recorded)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        _encode_together(embedder, lines, results)
        assert seen == [(len(lines), 1)] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert embedder.query_batches == batches + 1
    for line, want in zip(lines, expected, strict=True):
        assert np.abs(results[line] - alone[line]).max() < 1e-3, line  # as if asked alone (float error)
        assert results[line] @ want >= 0.9999, line  # where the memories' float32 vectors are


def test_a_batch_of_queries_in_float32_is_exactly_sentence_transformers_batch():
    embedder = Embedder(DEFAULT_MODEL, query_precision="float32")
    assert np.abs(embedder._query.many(LINES) - embedder.encode(LINES)).max() < 1e-5


def _encode_together(embedder, lines, results):
    """Each line's query from a thread of its own, all asked while the model is busy."""
    with embedder._lock:  # the model is busy: every query waits for it
        threads = [
            threading.Thread(target=lambda line=line: results.__setitem__(line, embedder.encode_query(line)))
            for line in lines
        ]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 10
        while len(embedder._waiting) < len(lines) and time.monotonic() < deadline:
            time.sleep(0.01)
    for thread in threads:
        thread.join(10)


def test_a_query_runs_on_one_torch_thread_and_leaves_the_process_s_count(monkeypatch):
    """After a user's pause the pool's other threads sleep, and waking them cost more than they gave
    (17 ms against 9-10 on one thread on a 2-core box); an LLM engine in the process keeps its count."""
    import torch

    embedder = get_embedder(DEFAULT_MODEL)
    query, seen = embedder._query, []

    def recorded(text):
        seen.append(torch.get_num_threads())
        return query(text)

    monkeypatch.setattr(embedder, "_query", recorded)
    monkeypatch.setattr(recorded, "device", query.device, raising=False)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        vector = embedder.encode_query(LINES[0])
        assert seen == [1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert vector @ embedder.encode([LINES[0]])[0] >= 0.9999
