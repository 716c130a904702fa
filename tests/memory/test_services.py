"""Remembering, merging, searching and forgetting, against the real Chroma server and MiniLM."""

import pytest

from apps.memory import index as vector_index
from apps.memory import services
from apps.memory.models import Memory
from apps.memory.selectors import index_active, memories_recall, memories_search
from tests import memories

pytestmark = pytest.mark.django_db(transaction=True)


def remember(user, character, text, kind="fact", importance=0.7):
    return memories.remember(user, character, text, kind=kind, importance=importance, sources=["m1"])


def test_a_memory_is_found_by_meaning_and_only_by_its_owner(user, other_user, character):
    remember(user, character, "The user said: I live in Lisbon with my dog Rex.")
    remember(user, character, "The user said: I really love jazz music.", kind="preference")
    remember(other_user, character, "The user said: My cat is called Whiskers.")
    hits = memories_search(user_id=user.pk, character_id=character.pk, query="Which pet does she have?", k=5)
    assert [m.text for m, _ in hits][0] == "The user said: I live in Lisbon with my dog Rex."
    assert all(m.user_id == user.pk for m, _ in hits)  # never another user's
    music, _ = memories_recall(user_id=user.pk, character_id=character.pk, query="what music should I play?")
    assert music[0].text.endswith("I really love jazz music.")
    index = index_active()
    assert Memory.objects.filter(embedding_version=index.version).count() == 3
    assert vector_index.count(index.collection) == 3


def test_a_turn_off_every_memory_s_topic_recalls_none_and_reads_no_memory_rows(
    user, character, django_assert_num_queries
):
    remember(user, character, "The user said: I live in Lisbon with my dog Rex.")
    remember(user, character, "The user said: I really love jazz music.", kind="preference")
    index_active()  # made on first use; a turn finds it
    with django_assert_num_queries(1):  # the active index; below MEMORY_MIN_SIMILARITY no row is read
        found, timings = memories_recall(user_id=user.pk, character_id=character.pk, query="What is 17 times 23?")
    assert found == [] and "memory_error" not in timings
    with django_assert_num_queries(2):  # on topic: the rows too
        found, _ = memories_recall(user_id=user.pk, character_id=character.pk, query="Where do I live?")
    assert [m.text for m in found][0].endswith("Lisbon with my dog Rex.")


def test_a_user_without_memories_of_the_character_costs_a_turn_one_query_and_no_embedding(
    user, other_user, character, django_assert_num_queries, monkeypatch
):
    """Every new user's turns: nothing to search, so neither the query's embedding (50-120 ms under
    load) nor the index is asked. Once the user has a memory, it is recalled the very next turn."""
    from apps.memory import selectors

    remember(other_user, character, "The user said: I live in Lisbon with my dog Rex.")  # another user's
    index_active()
    asked = []
    real_embedder = selectors.embedder
    monkeypatch.setattr(selectors, "embedder", lambda model: asked.append(model) or real_embedder(model))
    with django_assert_num_queries(1):  # the active index, with whether the user has any memories
        found, timings = memories_recall(user_id=user.pk, character_id=character.pk, query="Where do I live?")
    assert found == [] and asked == [] and "memory_error" not in timings
    remember(user, character, "The user said: I live in Porto.")
    found, _ = memories_recall(user_id=user.pk, character_id=character.pk, query="Where do I live?")
    assert [m.text for m in found] == ["The user said: I live in Porto."] and len(asked) == 1


def test_restatements_are_merged_not_piled_up(user, character):
    first = remember(user, character, "The user said: I really love jazz.", kind="preference")
    again = remember(user, character, "The user said: I really love jazz.", kind="preference", importance=0.9)
    reworded = remember(user, character, "The user said: I love jazz music.", kind="preference")
    other = remember(user, character, "The user said: I love rock music.", kind="preference")
    assert first.pk == again.pk == reworded.pk != other.pk
    merged = Memory.objects.get(pk=first.pk)
    assert merged.text == "The user said: I love jazz music." and merged.importance == 0.9  # newest wording
    assert vector_index.count(index_active().collection) == 2
    live, work = (
        remember(user, character, "The user said: I live in Lisbon."),
        remember(user, character, "The user said: I work in Lisbon."),
    )
    assert live.pk != work.pk  # close in meaning, different facts


def test_forgetting_removes_the_memory_from_the_index_at_once(user, other_user, character):
    memory = remember(user, character, "The user said: My name is Ana.")
    with pytest.raises(services.MemoryRequestError) as exc:
        services.memory_delete(user_id=other_user.pk, memory_id=memory.pk)  # not theirs
    assert exc.value.code == "memory_not_found"
    services.memory_delete(user_id=user.pk, memory_id=memory.pk)
    assert not Memory.objects.exists()
    assert vector_index.count(index_active().collection) == 0
    assert memories_search(user_id=user.pk, character_id=character.pk, query="name", k=5) == []
    with pytest.raises(services.MemoryRequestError) as exc:
        services.memory_delete(user_id=user.pk, memory_id="not-a-uuid")
    assert exc.value.code == "invalid_memory_id"


@pytest.mark.usefixtures("memory_worker")
def test_an_edit_is_reembedded(user, character):
    from tests.memory.test_reembed import wait_for

    memory = remember(user, character, "The user said: I play the violin.")
    memory.text = "The user said: I grow tomatoes in my garden."
    services.memory_save(memory=memory)

    def new_vector():  # the old one scores ~0.2 against the new text
        ((best, similarity),) = memories_search(user_id=user.pk, character_id=character.pk, query=memory.text, k=1)
        return best.pk == memory.pk and similarity > 0.99

    wait_for(new_vector, timeout=20, what="the edited memory's new vector")


def test_retrieval_without_the_index_degrades_to_no_memories(user, character, settings):
    remember(user, character, "The user said: I live in Lisbon.")
    settings.CHROMA_URL = "http://127.0.0.1:9"  # the server is unreachable
    from apps.memory import index

    saved, index._client = index._client, None
    index.forget_handles()
    try:
        memories, timings = memories_recall(user_id=user.pk, character_id=character.pk, query="where do I live")
    finally:
        index._client = saved
        index.forget_handles()
    assert memories == [] and "memory_error" in timings
