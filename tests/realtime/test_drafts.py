"""A draft (unpublished) character over the socket: only for staff who may change characters."""

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import Permission

from apps.accounts.services import token_create
from tests.realtime.client import connect, open_socket

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]


async def key_of(django_user_model, username: str, *, perms=(), **flags) -> str:
    def make():
        user = django_user_model.objects.create_user(username=username, password="pw", **flags)
        user.user_permissions.add(*Permission.objects.filter(content_type__app_label="characters", codename__in=perms))
        return token_create(user=user, name="t").key

    return await sync_to_async(make)()


async def reply_to_draft(key: str) -> dict:
    return await connect(await open_socket(), api_key=key, character="draft")


async def test_staff_without_the_change_permission_do_not_find_a_draft(django_user_model, draft_character):
    key = await key_of(django_user_model, "staff", is_staff=True, perms=["view_character"])
    assert (await reply_to_draft(key))["code"] == "unknown_character"


async def test_staff_who_may_change_characters_and_superusers_talk_to_a_draft(django_user_model, draft_character):
    editor = await key_of(django_user_model, "editor", is_staff=True, perms=["change_character"])
    assert (await reply_to_draft(editor))["type"] == "connected"
    root = await key_of(django_user_model, "root", is_staff=True, is_superuser=True)
    assert (await reply_to_draft(root))["type"] == "connected"


async def test_the_permission_without_staff_status_is_not_enough(django_user_model, draft_character):
    key = await key_of(django_user_model, "former", perms=["change_character"])
    assert (await reply_to_draft(key))["code"] == "unknown_character"
