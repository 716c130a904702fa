"""The "My account" pages in a real browser against the live Daphne of the scaled stack: an API token
created on the page is shown once and works against the real REST API and socket; revoked on the
page, it is refused and the socket opened with it is closed (4010). Memories written through the
services (the real embedding model and Chroma index) are listed, searched by meaning (the embed
worker's job, as the socket's search) and deleted: gone from the database and the index. Another
user's tokens and memories read as not found. Every page passes axe and is screenshotted."""

import json
import re
from contextlib import ExitStack

import httpx
import pytest
from playwright.sync_api import expect
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

from apps.accounts.models import ApiToken
from apps.accounts.services import token_create
from apps.characters.models import Character
from apps.memory import index as vector_index
from apps.memory.models import Memory
from apps.memory.selectors import index_active
from tests import memories, stack
from tests.conftest import LOG_DIR
from tests.web.conftest import PASSWORD, log_in, page_check

pytestmark = pytest.mark.django_db(transaction=True)

NOT_FOUND = r"^error: Failed to load resource: the server responded with a status of 404"


@pytest.fixture
def nova():
    return Character.objects.create(
        name="Nova", slug="nova", persona="You are Nova, an astronomy guide.", greeting="Hi!", is_published=True
    )


def remember(user, character, text: str, kind: str = "fact") -> Memory:
    return memories.remember(user, character, text, kind=kind, importance=0.6)


def csrf(page) -> str:
    return next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")


@pytest.fixture
def socket_with(web):
    """Opens a socket to the live server, connecting to Nova with an API key: (socket, first frame).
    Every socket it opened is closed after the test."""
    with ExitStack() as opened:

        def open_with(key: str):
            ws = opened.enter_context(ws_connect(web.url.replace("http", "ws", 1) + "/ws", open_timeout=10))
            ws.send(json.dumps({"type": "connect", "character_name": "nova", "api_token": key}))
            return ws, json.loads(ws.recv(timeout=10))

        yield open_with


def rest_status(web, key: str) -> int:
    """An authenticated REST call with the key (no cookies): the list of my memories."""
    return httpx.get(f"{web.url}/api/memories", headers={"Authorization": f"Bearer {key}"}, timeout=10).status_code


def test_a_token_made_on_the_page_is_shown_once_works_and_revoked_stops(page, web, socket_with, member, nova):
    log_in(page, "lena", PASSWORD)
    page.get_by_role("link", name="My account").click()
    expect(page.get_by_role("heading", name="My account")).to_be_visible()
    page_check(page, "account")
    page.get_by_role("link", name="API tokens").click()
    expect(page.get_by_text("You have no API tokens.")).to_be_visible()
    page_check(page, "tokens-empty")

    page.get_by_label("Token name").fill("laptop script")
    page.get_by_label("Token name").press("Enter")  # the keyboard submits it
    expect(page.get_by_role("status").first).to_contain_text("Token “laptop script” created.")
    field = page.get_by_role("textbox", name="Your new token")
    expect(field).to_have_attribute("readonly", "")
    key = field.input_value()
    token = ApiToken.objects.get(user=member)
    assert key.startswith("pt_") and key[:8] == token.prefix and token.name == "laptop script"
    page.get_by_role("button", name="Copy").click()
    expect(page.locator("#copy-status")).to_have_text(re.compile(r"Copied|Selected"))
    page_check(page, "token-created")

    # The key works: the REST API and the socket take it.
    assert rest_status(web, key) == 200
    ws, first = socket_with(key)
    assert first["type"] == "connected"

    page.reload()  # shown once: gone after a reload, the token listed by name and prefix only
    expect(page.get_by_role("textbox", name="Your new token")).to_have_count(0)
    listed = page.get_by_role("listitem").filter(has=page.get_by_role("heading", name="laptop script"))
    expect(listed).to_contain_text(f"{token.prefix}…")
    expect(listed).not_to_contain_text("never")  # the REST call above used it
    assert key not in page.content()
    page_check(page, "tokens")

    page.get_by_role("link", name="Revoke laptop script").click()
    expect(page.get_by_role("heading", name="Revoke “laptop script”?")).to_be_visible()
    page_check(page, "token-revoke")
    page.get_by_role("button", name="Revoke the token").click()
    expect(page.get_by_role("status").first).to_contain_text("revoked")
    expect(page.get_by_text("You have no API tokens.")).to_be_visible()

    assert json.loads(ws.recv(timeout=5)) == {"type": "disconnected", "reason": "token_revoked"}
    with pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4010
    assert rest_status(web, key) == 401
    _, first = socket_with(key)
    assert (first["type"], first["code"]) == ("error", "auth_failed")


def test_another_users_token_and_memory_are_not_found(page, member, stranger, nova):
    theirs = token_create(user=stranger, name="omar's phone")
    memory = Memory.objects.create(user=stranger, character=nova, text="The user lives in Oslo.")
    log_in(page, "lena", PASSWORD)
    page.console_problems.allow(NOT_FOUND)  # Chromium logs each 404 page it loads

    assert page.goto(f"/account/tokens/{theirs.token.pk}/revoke").status == 404
    form = {"csrfmiddlewaretoken": csrf(page), "confirm": "yes"}
    assert page.request.post(f"/account/tokens/{theirs.token.pk}/revoke", form=form).status == 404
    assert page.request.post(f"/account/memory/{memory.pk}/delete", form=form).status == 404
    page.goto("/account/tokens/")
    expect(page.get_by_text("omar's phone")).to_have_count(0)
    page.goto("/account/memories/nova/")
    expect(page.get_by_text("Oslo")).to_have_count(0)
    expect(page.get_by_text("Nova remembers nothing about you.")).to_be_visible()
    theirs.token.refresh_from_db()
    assert theirs.token.revoked_at is None and Memory.objects.filter(pk=memory.pk).exists()


@pytest.mark.usefixtures("memory_worker")
def test_my_memories_listed_searched_and_deleted_from_the_index(page, member, stranger, nova, marlowe):
    lisbon = remember(member, nova, "The user lives in Lisbon, near the river.")
    remember(member, nova, "The user loves playing chess on Sundays.", kind="preference")
    newest = remember(member, nova, "Nova promised to tell the user about Saturn's rings.", kind="promise")
    remember(member, marlowe, "The user drinks black coffee.")
    remember(stranger, nova, "The user lives in Oslo.")
    index = index_active()
    assert str(lisbon.pk) in vector_index.ids(index.collection)

    log_in(page, "lena", PASSWORD)
    page.get_by_role("link", name="My account").click()
    page.get_by_role("link", name="My memories").click()
    characters = page.get_by_role("list", name="Characters with memories of me")
    expect(characters.get_by_role("listitem")).to_have_count(2)
    expect(characters).to_contain_text("3 memories")
    page_check(page, "memories")

    characters.get_by_role("link", name="Nova").click()
    memories = page.get_by_role("list", name="Memories").get_by_role("listitem")
    expect(memories).to_have_count(3)
    expect(memories.first).to_contain_text(newest.text)  # newest first
    expect(memories.first).to_contain_text("Promise")
    expect(page.get_by_text("Oslo")).to_have_count(0)
    page_check(page, "character-memories")

    search = page.get_by_role("searchbox", name="Search these memories")
    search.fill("which city is home?")
    search.press("Enter")
    found = page.get_by_role("list", name="Memories found").get_by_role("listitem")
    expect(found.first).to_contain_text("Lisbon", timeout=30_000)  # a cold worker may still be loading
    expect(page.get_by_text("Oslo")).to_have_count(0)
    page_check(page, "memory-search")

    delete = found.first.get_by_role("button", name=re.compile(r"^Delete the memory “The user lives in Lisbon"))
    delete.focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("status").first).to_contain_text("Nova no longer remembers that.")
    expect(page.get_by_text("Lisbon")).to_have_count(0)  # back on the search: the others, not it
    expect(found).to_have_count(2)
    assert not Memory.objects.filter(pk=lisbon.pk).exists()
    assert str(lisbon.pk) not in vector_index.ids(index.collection)
    assert Memory.objects.filter(user=stranger).count() == 1
    page_check(page, "memory-deleted")


# --- embedded: one Daphne, SQLite, in-process layer and tasks (what `make run` serves) ----------

EMBEDDED_SETUP = """
from apps.accounts.models import User
from apps.characters.models import Character
from apps.memory.services import memory_remember
nova = Character.objects.create(name="Nova", slug="nova", persona="You are Nova.", is_published=True)
lena = User.objects.create_user(username="lena", password="pw-embedded-42")
for text in ("The user lives in Lisbon, near the river.", "The user loves playing chess on Sundays."):
    memory_remember(user_id=lena.pk, character_id=nova.pk, text=text, kind="fact", importance=0.6, source_message_ids=[])
"""


def test_embedded_mode_searches_memories_in_its_own_process(tmp_path):
    """The search's job runs in the Daphne process itself there; its answer comes back on the in-process layer."""
    env = {
        "DJANGO_SETTINGS_MODULE": "personatalk.settings",
        "PERSONATALK_VAR_DIR": str(tmp_path),
        "WARM_MODELS": "false",  # only the embedding model is needed, loaded by the first search
        "DJANGO_ALLOW_ASYNC_UNSAFE": None,
        **dict.fromkeys(
            ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "TASKS_IN_PROCESS", "CHROMA_URL", "DEMO_API_TOKEN")
        ),
    }
    stack.manage("migrate", "--noinput", env=env)
    stack.manage("shell", "-c", EMBEDDED_SETUP, env=env)
    daphne, url = stack.start_daphne(env=env, log_dir=LOG_DIR)
    try:
        with httpx.Client(base_url=url, timeout=60) as browser:
            form = browser.get("/login/")
            token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text).group(1)
            logged_in = browser.post(
                "/login/", data={"username": "lena", "password": "pw-embedded-42", "csrfmiddlewaretoken": token}
            )
            assert logged_in.status_code == 302, logged_in.text[:300]
            found = browser.get("/account/memories/nova/", params={"q": "which city is home?"})
            assert found.status_code == 200, found.text[:2000]
            hits = re.findall(r'<p class="memory-text">([^<]+)</p>', found.text)
            assert hits[0] == "The user lives in Lisbon, near the river." and len(hits) == 2, hits
    finally:
        daphne.stop()
