"""A turn's query takes a short path through the model; it must land where the memories' vectors are."""

import json
import shutil
import threading
import time

import numpy as np

from workers.embed.engine import DEFAULT_MODEL, Embedder, get_embedder, model_dir

LINES = [
    "Where do I live?",
    "",
    "WHAT did I say about JAZZ, hm?",
    "Ça va ? J'habite à Lisbonne — 東京にも住んでいました 🎷",
    "I told you about my sister's cat, Miso, who is afraid of the vacuum cleaner. " * 30,  # past 256 tokens
]


def test_a_turns_query_is_embedded_exactly_as_the_memories_are():
    embedder = get_embedder(DEFAULT_MODEL)
    assert embedder.fast_queries  # the shipped model takes the short path (retrieval's latency depends on it)
    batch = embedder.encode(LINES)
    for line, expected in zip(LINES, batch, strict=True):
        assert np.abs(embedder.encode_query(line) - expected).max() < 1e-5, line
    assert embedder.encode_query(LINES[0]) @ embedder.encode_query("In which city is my home?") > 0.5


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


def test_queries_asked_at_once_are_encoded_together_and_each_gets_its_own_vector():
    """An LLM worker streaming many turns asks for their queries at once: one batch, not a queue."""
    embedder = get_embedder(DEFAULT_MODEL)
    lines = [f"What did I tell you about {topic}?" for topic in ("jazz", "my sister", "Lisbon", "the cat", "tea")]
    expected = embedder.encode(lines)
    batches, results = embedder.query_batches, {}
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
    assert embedder.query_batches == batches + 1
    for line, want in zip(lines, expected, strict=True):
        assert np.abs(results[line] - want).max() < 1e-5, line


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
    assert np.abs(vector - embedder.encode([LINES[0]])[0]).max() < 1e-5
