"""Staff powers follow Django permissions: being staff alone lets no one talk to a draft character
or run the memory admin's actions."""

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from apps.memory.models import EmbeddingIndex, Job
from apps.memory.selectors import index_active

pytestmark = pytest.mark.django_db


def staff_with(django_user_model, username: str, *codenames: str):
    user = django_user_model.objects.create_user(username=username, password="pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="memory", codename__in=codenames))
    client = Client()
    client.force_login(user)
    return client


def actions_offered(client, url: str) -> set[str]:
    page = client.get(url)
    assert page.status_code == 200
    form = page.context["action_form"]  # None when no action is offered
    return {name for name, _ in form.fields["action"].choices if name} if form else set()


def test_memory_admin_actions_need_their_permissions(django_user_model, monkeypatch):
    monkeypatch.setattr("workers.dispatch.enqueue", lambda task, **kwargs: None)  # the job's chunks are not run
    index = index_active()
    viewer = staff_with(django_user_model, "viewer", "view_embeddingindex", "view_job")
    assert actions_offered(viewer, "/admin/memory/embeddingindex/") == set()
    # posting the action anyway starts nothing
    viewer.post("/admin/memory/embeddingindex/", {"action": "reembed", "_selected_action": [index.pk]})
    assert not Job.objects.exists()

    operator = staff_with(
        django_user_model, "operator", "view_embeddingindex", "change_embeddingindex", "add_job", "view_job"
    )
    assert actions_offered(operator, "/admin/memory/embeddingindex/") == {"reembed", "drop_vectors"}
    assert actions_offered(operator, "/admin/memory/job/") == set()  # may start jobs, not cancel them
    operator.post("/admin/memory/embeddingindex/", {"action": "reembed", "_selected_action": [index.pk]})
    job = Job.objects.get()

    assert actions_offered(viewer, "/admin/memory/job/") == set()
    viewer.post("/admin/memory/job/", {"action": "cancel", "_selected_action": [job.pk]})
    assert Job.objects.get().status == "running"

    manager = staff_with(django_user_model, "manager", "view_job", "change_job")
    assert actions_offered(manager, "/admin/memory/job/") == {"resume", "cancel"}
    manager.post("/admin/memory/job/", {"action": "cancel", "_selected_action": [job.pk]})
    assert Job.objects.get().status == "cancelled" and EmbeddingIndex.objects.get(pk=job.index_id).state == "retired"
