"""Access taken away ends live sockets within a second: token revoked, user deactivated, logged out.

In-process app with the test settings' Redis channel layer, and the embedded mode's in-process
layer; the same through real Daphne processes is in tests/realtime/test_revocation_live.py.
"""

import asyncio
import time

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.test import Client, override_settings
from django.urls import reverse

from apps.accounts.models import ApiToken, User
from apps.accounts.services import token_create, token_revoke, user_deactivate
from apps.conversations.models import Message
from tests.realtime.client import connect, connected_socket, dumps, open_socket, send_raw

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

EMBEDDED_LAYER = {"default": {"BACKEND": "apps.realtime.layers.ThreadSafeInMemoryChannelLayer"}}


async def assert_ended(comm, reason: str, close_code: int, since: float) -> float:
    """The socket says `disconnected` with `reason`, then closes with `close_code`; returns seconds taken."""
    assert await comm.receive_json_from(timeout=5) == {"type": "disconnected", "reason": reason}
    assert await comm.receive_output(timeout=5) == {"type": "websocket.close", "code": close_code}
    elapsed = time.monotonic() - since
    assert elapsed < 1.0, elapsed  # the bound: "within a second"
    return elapsed


async def assert_usable(comm):
    assert await send_raw(comm, dumps({"type": "ping"})) == {"type": "pong"}


async def cookie_socket(user):
    """A browser socket authenticated by a fresh login session; returns it and that browser's client."""
    browser = Client()
    await sync_to_async(browser.force_login)(user)
    comm = await open_socket(
        [
            (b"cookie", f"sessionid={browser.cookies['sessionid'].value}".encode()),
            (b"host", b"127.0.0.1:8000"),
            (b"origin", b"http://127.0.0.1:8000"),
        ]
    )
    assert (await connect(comm))["type"] == "connected"
    return comm, browser


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_superuser(username="root", password="pw")


@pytest.fixture
def admin_browser(staff):
    browser = Client()
    browser.force_login(staff)
    return browser


async def test_revoking_a_token_ends_its_socket_and_no_other(user, api_key, character):
    token = await ApiToken.objects.aget(user=user)
    phone = await connected_socket((await sync_to_async(token_create)(user=user, name="phone")).key)
    laptop = await connected_socket(api_key)
    started = time.monotonic()
    await sync_to_async(token_revoke)(token=token)
    await assert_ended(laptop, "token_revoked", 4010, started)
    await assert_usable(phone)  # the user's other token is still good
    assert (await connect(await open_socket(), api_key=api_key))["code"] == "auth_failed"


async def test_revoking_in_the_admin_ends_the_socket(user, api_key, character, admin_browser):
    token = await ApiToken.objects.aget(user=user)
    comm = await connected_socket(api_key)
    changelist = reverse("admin:accounts_apitoken_changelist")
    response = await sync_to_async(admin_browser.post)(changelist, {"action": "revoke", "_selected_action": [token.pk]})
    assert response.status_code == 302
    started = time.monotonic()  # the admin has answered (the change is committed): the bound runs from here
    await assert_ended(comm, "token_revoked", 4010, started)


async def test_deactivating_a_user_ends_all_their_sockets(user, api_key, character, django_user_model):
    other = await django_user_model.objects.acreate(username="bob")
    bystander = await connected_socket((await sync_to_async(token_create)(user=other, name="b")).key)
    by_token = await connected_socket(api_key)
    by_cookie, _ = await cookie_socket(user)
    started = time.monotonic()
    await sync_to_async(user_deactivate)(user=user)
    await assert_ended(by_token, "user_deactivated", 4011, started)
    await assert_ended(by_cookie, "user_deactivated", 4011, started)
    await assert_usable(bystander)


async def test_deactivating_in_the_admin_change_form_goes_through_the_service(user, api_key, character, admin_browser):
    comm = await connected_socket(api_key)
    change = reverse("admin:accounts_user_change", args=[user.pk])
    form = {
        "username": user.username,
        "first_name": "",
        "last_name": "",
        "email": "",
        "is_staff": "",
        "is_superuser": "",
        "last_login_0": "",
        "last_login_1": "",
        "date_joined_0": user.date_joined.strftime("%Y-%m-%d"),
        "date_joined_1": user.date_joined.strftime("%H:%M:%S"),
        # "is_active" left out: the checkbox is unticked
    }
    response = await sync_to_async(admin_browser.post)(change, form)
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else response
    started = time.monotonic()  # the admin has answered (the change is committed): the bound runs from here
    await assert_ended(comm, "user_deactivated", 4011, started)
    assert not (await User.objects.aget(pk=user.pk)).is_active


async def test_deactivate_action_in_the_admin(user, api_key, character, admin_browser):
    comm = await connected_socket(api_key)
    changelist = reverse("admin:accounts_user_changelist")
    response = await sync_to_async(admin_browser.post)(
        changelist, {"action": "deactivate", "_selected_action": [user.pk]}
    )
    assert response.status_code == 302
    started = time.monotonic()  # the admin has answered (the change is committed): the bound runs from here
    await assert_ended(comm, "user_deactivated", 4011, started)


async def test_logging_out_ends_the_sockets_of_that_login_only(staff, character):
    """Staff try characters from the admin on cookie sockets; the admin's logout ends that session's."""
    this_tab, browser = await cookie_socket(staff)
    other_device, _ = await cookie_socket(staff)  # another login of the same user
    by_token = await connected_socket((await sync_to_async(token_create)(user=staff, name="cli")).key)
    response = await sync_to_async(browser.post)(reverse("admin:logout"))
    assert response.status_code == 302 and response["Location"] == reverse("web:login")  # LOGOUT_REDIRECT_URL
    started = time.monotonic()  # the admin has answered (the change is committed): the bound runs from here
    await assert_ended(this_tab, "logged_out", 4012, started)
    await assert_usable(other_device)
    await assert_usable(by_token)


@pytest.mark.parametrize(
    "bypass, reason, close_code",
    [
        (lambda user: User.objects.filter(pk=user.pk).update(is_active=False), "user_deactivated", 4011),
        (lambda user: ApiToken.objects.filter(user=user).update(revoked_at="2026-01-01T00:00Z"), "token_revoked", 4010),
    ],
)
@pytest.mark.parametrize(
    "frame", [{"type": "message", "content": "hello?"}, {"type": "message", "content": "  "}, {"type": "regenerate"}]
)
async def test_access_taken_away_behind_the_services_back_fails_the_next_frame(
    bypass, reason, close_code, frame, user, api_key, character
):
    """A shell or bulk update sends no event: the socket notices on its next frame, and a turn it
    asked for is neither saved nor queued (checked in the same trip that would have queued it)."""
    comm = await connected_socket(api_key)
    await sync_to_async(bypass)(user)
    assert await comm.receive_nothing(timeout=0.2)
    await comm.send_json_to(frame)
    await assert_ended(comm, reason, close_code, time.monotonic())
    assert not await sync_to_async(Message.objects.filter(session__user=user, role="user").exists)()


async def test_a_deleted_login_session_fails_the_next_frame(user, character):
    comm, browser = await cookie_socket(user)
    await sync_to_async(browser.session.delete)()  # e.g. `clearsessions`, or a password change elsewhere
    await comm.send_json_to({"type": "clear_history"})
    assert (await comm.receive_json_from())["type"] == "history_cleared"  # re-checked at most once a second
    await asyncio.sleep(1.0)
    await comm.send_json_to({"type": "ping"})
    await assert_ended(comm, "logged_out", 4012, time.monotonic())


@override_settings(CHANNEL_LAYERS=EMBEDDED_LAYER)
async def test_embedded_layer_revocation_and_logout(staff, character):
    """The embedded mode's in-process layer: the service runs in a worker thread, the socket on the loop."""
    assert type(get_channel_layer()).__name__ == "ThreadSafeInMemoryChannelLayer"
    issued = await sync_to_async(token_create)(user=staff, name="cli")
    comm = await connected_socket(issued.key)
    tab, browser = await cookie_socket(staff)
    await sync_to_async(browser.post)(reverse("admin:logout"))
    started = time.monotonic()  # the admin has answered (the change is committed): the bound runs from here
    await assert_ended(tab, "logged_out", 4012, started)
    started = time.monotonic()
    await sync_to_async(token_revoke)(token=issued.token)
    await assert_ended(comm, "token_revoked", 4010, started)
