"""Idle sessions summed up into memories (the scripted engine writes the summary), and the admin."""

import time
from datetime import timedelta

import pytest
from django.core.management import call_command

from apps.conversations.models import ChatSession, Message
from apps.memory import services
from apps.memory.models import EmbeddingIndex, Job, Memory
from apps.memory.selectors import index_active
from workers.embed.tasks import session_summarize

pytestmark = pytest.mark.django_db(transaction=True)


def chat(user, character, *lines, idle_minutes=0):
    session = ChatSession.objects.create(user=user, character=character)
    for role, content in lines:
        Message.objects.create(session=session, role=role, content=content)
    ChatSession.objects.filter(pk=session.pk).update(updated_at=session.updated_at - timedelta(minutes=idle_minutes))
    return session


def test_an_idle_session_becomes_one_summary_memory_rewritten_as_it_grows(user, character):
    session = chat(user, character, ("user", "I am planning a trip to Iceland."), ("assistant", "How exciting!"))
    session_summarize(session_id=str(session.pk))
    summary = Memory.objects.get(kind="summary")
    assert summary.text.startswith("Summary of an earlier conversation:") and "Iceland" in summary.text
    assert summary.session_id == session.pk and len(summary.source_message_ids) == 2
    Message.objects.create(session=session, role="user", content="I will also visit Greenland.")
    session_summarize(session_id=str(session.pk))
    assert Memory.objects.filter(kind="summary").count() == 1  # rewritten, not piled up
    assert "Greenland" in Memory.objects.get(kind="summary").text
    assert ChatSession.objects.get(pk=session.pk).summarized_at is not None


def test_only_sessions_idle_long_enough_and_changed_since_are_picked(user, character, settings, monkeypatch):
    from workers.embed import tasks

    queued = []
    monkeypatch.setattr("workers.dispatch.enqueue", lambda name, **kw: queued.append(kw["session_id"]))
    settings.SESSION_IDLE_MINUTES = 30
    idle = chat(user, character, ("user", "I like tea."), idle_minutes=45)
    chat(user, character, ("user", "Still talking."), idle_minutes=5)
    chat(user, character, idle_minutes=45)  # nothing said
    assert tasks.sessions_summarize_idle() == 1 and queued == [str(idle.pk)]
    ChatSession.objects.filter(pk=idle.pk).update(summarized_at=idle.updated_at + timedelta(minutes=50))
    queued.clear()
    call_command("summarize_idle_sessions")
    assert queued == []  # summed up already, nothing new since


def test_the_embedded_mode_looks_for_idle_sessions_by_itself(user, character, settings):
    """No beat process there: the web process runs the schedule, in a thread of its own."""
    from tests.memory.test_reembed import wait_for
    from workers.dispatch import beat_start

    settings.TASKS_IN_PROCESS, settings.SESSION_IDLE_MINUTES = True, 30
    settings.CELERY_BEAT_SCHEDULE = {
        "summaries": {"task": "workers.embed.tasks.sessions_summarize_idle", "schedule": 0.3}
    }
    idle = chat(user, character, ("user", "I am learning to play the oboe."), idle_minutes=45)
    going = chat(user, character, ("user", "Still here, talking."), idle_minutes=1)
    beat = beat_start()
    try:
        wait_for(lambda: ChatSession.objects.get(pk=idle.pk).summarized_at is not None, timeout=60, what="a summary")
        time.sleep(1)  # three more ticks: nothing new to sum up
    finally:
        beat.stop()
    summary = Memory.objects.get(kind="summary")  # one: not rewritten each tick, the session still going left alone
    assert "oboe" in summary.text and summary.session_id == idle.pk
    assert ChatSession.objects.get(pk=going.pk).summarized_at is None


def test_a_session_with_nothing_to_keep_is_not_picked_again(user, character, settings, monkeypatch):
    from workers.dispatch import task_named
    from workers.embed import tasks

    settings.SESSION_IDLE_MINUTES = 30
    greeting = chat(user, character, ("assistant", "Hello! What shall we talk about?"), idle_minutes=45)
    monkeypatch.setattr("workers.dispatch.enqueue", lambda name, **kw: task_named(name)(**kw))
    assert tasks.sessions_summarize_idle() == 1
    assert tasks.sessions_summarize_idle() == 0  # marked: no summary, and not looked at every five minutes
    assert not Memory.objects.exists() and ChatSession.objects.get(pk=greeting.pk).summarized_at is not None


@pytest.mark.usefixtures("memory_worker")
def test_admin_shows_and_edits_memories_and_starts_a_reembed_job(admin_client, user, character, monkeypatch):
    memory = services.memory_remember(
        user_id=user.pk,
        character_id=character.pk,
        kind="fact",
        importance=0.7,
        text="The user said: I play the violin.",
        source_message_ids=[],
    )
    assert "I play the violin." in admin_client.get("/admin/memory/memory/").content.decode()
    page = admin_client.get(f"/admin/memory/memory/{memory.pk}/change/")
    assert page.status_code == 200
    response = admin_client.post(
        f"/admin/memory/memory/{memory.pk}/change/",
        {
            "user": user.pk,
            "character": character.pk,
            "text": "The user said: I play the cello.",
            "kind": "fact",
            "importance": 0.8,
            "session": "",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    from apps.memory.selectors import memories_search
    from tests.memory.test_reembed import wait_for

    def reembedded():  # the vector follows the new text (the embed worker does it)
        ((hit, similarity),) = memories_search(
            user_id=user.pk, character_id=character.pk, query="The user said: I play the cello.", k=1
        )
        return similarity > 0.99

    wait_for(reembedded, timeout=20, what="the edited memory's new vector")
    index = index_active()
    monkeypatch.setattr("workers.dispatch.enqueue", lambda name, **kwargs: None)  # the job's chunks wait: cancel it
    response = admin_client.post("/admin/memory/embeddingindex/", {"action": "reembed", "_selected_action": [index.pk]})
    assert response.status_code == 302
    job = Job.objects.get()
    assert job.total == 1 and job.index.state == "building"
    listing = admin_client.get("/admin/memory/job/").content.decode()
    assert "<progress" in listing and 'http-equiv="refresh"' in listing
    admin_client.post("/admin/memory/job/", {"action": "cancel", "_selected_action": [job.pk]})
    assert Job.objects.get().status == "cancelled" and EmbeddingIndex.objects.get(pk=job.index_id).state == "retired"
