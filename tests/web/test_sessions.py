"""The chat page's session controls in a real browser, against the real socket and a real LLM worker
(the scripted engine: it echoes the user's words, word by word; "dawdle" makes each word take
0.5 s, "slow" 50 ms): Stop, Regenerate, the sessions sidebar (open, rename, delete with a
confirmation), search across my messages, and another user's session reading as not found."""

import re
import time

import pytest
from playwright.sync_api import expect

from apps.characters.models import Character
from apps.conversations.models import ChatSession, Message
from apps.conversations.services import session_create
from tests.web.conftest import log_in, page_check

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "test-pass-4821"
GREETING = "Hi! I'm Nova. Ask me about tonight's sky."
NOT_FOUND = r"^error: Failed to load resource: the server responded with a status of 404"
# Records each change of the last reply's text, so a test can see a reply written again from scratch.
WATCH_REPLY = """() => {
  window.replySteps = [];
  new MutationObserver(() => {
    const last = document.querySelector('#history .msg-assistant:last-child .text');
    if (last && window.replySteps.at(-1) !== last.textContent) window.replySteps.push(last.textContent);
  }).observe(document.getElementById('history'), {subtree: true, childList: true, characterData: true});
}"""


def scripted(said: str, name: str = "Nova") -> str:
    return f"You said: {said}. I am {name}. Anything else?"


@pytest.fixture
def nova():
    return Character.objects.create(
        name="Nova",
        slug="nova",
        persona="You are Nova, a cheerful astronomy guide.",
        greeting=GREETING,
        is_published=True,
    )


@pytest.fixture
def marlowe():
    return Character.objects.create(
        name="Marlowe", slug="marlowe", persona="You are Marlowe, a detective.", is_published=True
    )


@pytest.fixture
def member(django_user_model):
    return django_user_model.objects.create_user(username="lena", password=PASSWORD)


@pytest.fixture
def stranger(django_user_model):
    return django_user_model.objects.create_user(username="omar", password=PASSWORD)


def send(page, text: str) -> None:
    page.get_by_label(re.compile("^Message to")).fill(text)
    page.keyboard.press("Enter")


def reply_done(page, timeout_s: float = 30) -> None:
    expect(page.locator("#send")).to_be_enabled(timeout=timeout_s * 1000)
    expect(page.locator("#history .msg.pending")).to_have_count(0)


def open_chat(page, path: str = "/chat/nova/") -> None:
    page.goto(path)
    expect(page.locator("#connection")).to_have_text("Connected")


def replies(session_id) -> list[Message]:
    return list(Message.objects.filter(session_id=session_id, role=Message.Role.ASSISTANT).order_by("created_at"))


def saved_replies(session_id, count: int, timeout_s: float = 10) -> list[Message]:
    """The session's replies after the greeting, once `count` are saved: the LLM worker saves a
    stopped reply when it notices the stop (at its next word), just after the socket's turn_end."""
    deadline = time.monotonic() + timeout_s
    while len(found := replies(session_id)[1:]) < count and time.monotonic() < deadline:
        time.sleep(0.1)
    return found


def talk(user, character, *lines: str, title: str = "") -> ChatSession:
    """A saved session: the greeting, then the lines, said in turn by the user and the character."""
    session = session_create(user=user, character=character)
    for i, line in enumerate(lines):
        role = Message.Role.USER if i % 2 == 0 else Message.Role.ASSISTANT
        Message.objects.create(session=session, role=role, content=line)
    if title:
        ChatSession.objects.filter(pk=session.pk).update(title=title)
    return session


def test_stop_interrupts_a_streamed_reply_and_regenerate_writes_it_again(page, nova, member):
    log_in(page, "lena", PASSWORD)
    open_chat(page)
    stop, regenerate = page.get_by_role("button", name="Stop"), page.get_by_role("button", name="Regenerate")
    expect(stop).to_be_disabled()  # nothing is being written
    expect(regenerate).to_be_disabled()  # the greeting alone has no reply to replace

    said = "please dawdle over this one"  # 0.5 s a word: the reply is still streaming when Stop comes
    full_reply = scripted(said)
    send(page, said)
    reply = page.locator("#history .msg-assistant").last
    # The worker may still be busy (a loaded CI machine): wait for the first words, not a fixed 5 s.
    expect(reply.locator(".text")).to_contain_text("You said:", timeout=30_000)
    expect(stop).to_be_enabled()
    expect(regenerate).to_be_disabled()
    stop.focus()
    page.keyboard.press("Enter")  # reachable and usable from the keyboard

    reply_done(page)
    expect(reply.locator(".note")).to_have_text("(stopped)")
    expect(stop).to_be_disabled()
    expect(regenerate).to_be_enabled()
    shown = reply.locator(".text").inner_text().strip()
    assert full_reply.startswith(shown) and len(shown) < len(full_reply), shown  # partial on the page
    session_id = page.locator("#chat").get_attribute("data-session-id")
    [saved] = saved_replies(session_id, 1)
    assert saved.status == Message.Status.INTERRUPTED
    full = full_reply
    assert saved.content and len(saved.content) < len(full) and full.startswith(saved.content.strip()), saved.content
    page_check(page, "chat-stopped")

    page.reload()  # as saved: partial, marked stopped
    expect(page.locator("#connection")).to_have_text("Connected")
    expect(page.locator("#history .msg-assistant .note")).to_have_text("(stopped)")
    expect(page.locator("#history .msg-assistant .text").last).to_have_text(saved.content)

    # Regenerate: the stopped reply's place is cleared and the new reply streams into it.
    page.evaluate(WATCH_REPLY)
    page.get_by_role("button", name="Regenerate").click()
    reply_done(page)
    expect(page.locator("#history .msg-assistant")).to_have_count(2)  # the greeting and one reply
    expect(page.locator("#history .msg-assistant .text").last).to_have_text(full)
    expect(page.locator("#history .msg-assistant .note")).to_have_count(0)  # no longer "(stopped)"
    steps = page.evaluate("window.replySteps")
    assert steps[0] == "" and all(full.startswith(s.strip()) for s in steps[1:]), steps  # cleared, then grown
    statuses = [(m.status, m.content) for m in replies(session_id)[1:]]
    assert statuses == [(Message.Status.REPLACED, saved.content), (Message.Status.COMPLETE, full)]
    page_check(page, "chat-regenerated")


def test_regenerate_at_once_after_stop(page, nova, member):
    """Regenerate clicked the moment a stopped reply ends (before its job has let go) replaces it at once."""
    log_in(page, "lena", PASSWORD)
    open_chat(page)
    send(page, "dawdle, then again")
    expect(page.locator("#history .msg-assistant").last.locator(".text")).to_contain_text("You said:")
    page.get_by_role("button", name="Stop").click()
    expect(page.get_by_role("button", name="Regenerate")).to_be_enabled()
    page.get_by_role("button", name="Regenerate").click()
    reply_done(page)
    expect(page.locator("#history .msg-assistant .text").last).to_have_text(
        scripted("dawdle, then again"), timeout=20_000
    )
    expect(page.locator("#errors")).to_be_empty()


def test_regenerate_replaces_a_complete_reply(page, nova, member):
    log_in(page, "lena", PASSWORD)
    open_chat(page)
    send(page, "a slow question")
    reply_done(page)
    session_id = page.locator("#chat").get_attribute("data-session-id")
    [first] = replies(session_id)[1:]

    page.evaluate(WATCH_REPLY)
    page.get_by_role("button", name="Regenerate").click()
    expect(page.get_by_role("button", name="Stop")).to_be_enabled()  # a turn of its own, stoppable
    reply_done(page)
    assert page.evaluate("window.replySteps")[0] == ""  # the old text went before the new one came
    expect(page.locator("#history .msg-assistant .text")).to_have_text([GREETING, scripted("a slow question")])
    old, new = replies(session_id)[1:]
    assert (old.pk, old.status) == (first.pk, Message.Status.REPLACED) and new.status == Message.Status.COMPLETE
    page.reload()  # the replaced reply is gone from the page for good
    expect(page.locator("#history .msg .text")).to_have_text([GREETING, "a slow question", scripted("a slow question")])


def test_sidebar_opens_renames_and_deletes_with_confirmation(page, nova, marlowe, member, stranger):
    older = talk(member, nova, "tell me about Mars", "Mars is red and dusty.")
    newer = talk(member, nova, "and Jupiter?", "Jupiter is huge.")
    talk(member, marlowe, "who did it?", "The butler.")  # another character's: not in Nova's sidebar
    talk(stranger, nova, "secret of omar", "Kept.")  # another user's: never listed

    log_in(page, "lena", PASSWORD)
    open_chat(page)  # the latest session
    sidebar = page.get_by_role("complementary", name="Your chats with Nova")
    links = sidebar.locator(".session-link .session-title")
    expect(links).to_have_text(["Jupiter is huge.", "Mars is red and dusty."])  # newest first, previews
    expect(sidebar.locator('[aria-current="page"] .session-title')).to_have_text("Jupiter is huge.")
    expect(page.locator("#history .msg .text")).to_have_text([GREETING, "and Jupiter?", "Jupiter is huge."])
    page_check(page, "chat-sidebar")

    sidebar.get_by_role("link", name=re.compile("Mars is red")).click()
    expect(page).to_have_url(re.compile(rf"/chat/nova/\?session={older.pk}$"))
    expect(page.locator("#connection")).to_have_text("Connected")  # the socket opened that session
    expect(page.locator("#chat")).to_have_attribute("data-session-id", str(older.pk))
    expect(page.locator("#history .msg .text")).to_have_text([GREETING, "tell me about Mars", "Mars is red and dusty."])
    send(page, "more about Mars")  # goes to the session shown, not the latest one
    reply_done(page)
    expect(page.locator("#history .msg-assistant .text").last).to_have_text(scripted("more about Mars"))
    assert Message.objects.filter(session=older, content="more about Mars").exists()
    assert not Message.objects.filter(session=newer, content="more about Mars").exists()

    # Rename, from the keyboard-reachable <details> under the session.
    item = sidebar.locator(f'li[data-session="{older.pk}"]')
    item.get_by_text("Rename or delete").click()
    item.get_by_label("New title").fill("  Red   planet  ")
    item.get_by_role("button", name="Rename").click()
    expect(page).to_have_url(re.compile(rf"\?session={older.pk}$"))
    expect(page.locator(".flash")).to_have_text("Session renamed.")
    expect(links.first).to_have_text("Red planet")  # trimmed; and now the latest session (it was just used)
    assert ChatSession.objects.get(pk=older.pk).title == "Red planet"
    page_check(page, "chat-renamed")

    # Delete: a confirmation page first; "Keep it" keeps it.
    item = sidebar.locator(f'li[data-session="{newer.pk}"]')
    item.get_by_text("Rename or delete").click()
    item.get_by_role("link", name="Delete…").click()
    expect(page.get_by_role("heading", name="Delete this chat?")).to_be_visible()
    expect(page.locator(".quote")).to_have_text("Jupiter is huge.")
    page_check(page, "session-delete-confirm")
    page.get_by_role("link", name="Keep it").click()
    expect(page.locator("#history .msg .text").last).to_have_text("Jupiter is huge.")
    assert ChatSession.objects.get(pk=newer.pk).deleted_at is None

    # A POST without the confirmation deletes nothing.
    token = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    refused = page.request.post(f"/sessions/{newer.pk}/delete", form={"csrfmiddlewaretoken": token})
    assert refused.status == 400
    assert ChatSession.objects.get(pk=newer.pk).deleted_at is None

    page.goto(f"/sessions/{newer.pk}/delete")
    page.get_by_role("button", name="Delete the chat").click()
    expect(page).to_have_url(re.compile(r"/chat/nova/$"))
    expect(page.locator(".flash")).to_have_text("Session deleted.")
    expect(links).to_have_text(["Red planet"])
    assert ChatSession.objects.get(pk=newer.pk).deleted_at is not None
    page_check(page, "chat-after-delete")


def test_search_finds_my_messages_and_opens_their_session(page, nova, marlowe, member, stranger):
    mars = talk(member, nova, "is there water on Mars?", "Ice at the poles of MARS, yes.", title="Water")
    talk(member, nova, "tell me about Venus", "Venus is hot.")
    butler = talk(member, marlowe, "the mars bar was stolen", "Then the butler ate it.")
    talk(stranger, nova, "mars secret of omar", "Kept.")  # another user's: never found
    gone = talk(member, nova, "mars before deletion", "Deleted.")
    ChatSession.objects.filter(pk=gone.pk).update(deleted_at=mars.created_at)

    log_in(page, "lena", PASSWORD)
    open_chat(page)
    page.get_by_role("search").get_by_label("Search my messages").fill("mars")
    page.get_by_role("search").get_by_role("button", name="Search").click()
    expect(page).to_have_url(re.compile(r"/sessions/search/\?q=mars$"))
    expect(page.get_by_role("status")).to_have_text("2 chats with “mars”.")
    hits = page.locator(".hit")
    expect(hits.locator(".snippet")).to_have_text(["the mars bar was stolen", "Ice at the poles of MARS, yes."])
    expect(hits.get_by_role("link")).to_have_text(["Marlowe", "Nova: Water"])
    page_check(page, "session-search")

    hits.get_by_role("link", name="Marlowe").click()
    expect(page).to_have_url(re.compile(rf"/chat/marlowe/\?session={butler.pk}$"))
    expect(page.locator("#connection")).to_have_text("Connected")
    expect(page.locator("#history .msg .text")).to_have_text(["the mars bar was stolen", "Then the butler ate it."])

    page.goto("/sessions/search/?q=pluto")
    expect(page.get_by_role("status")).to_contain_text("No message")
    expect(page.locator(".hit")).to_have_count(0)
    page_check(page, "session-search-empty")


def test_another_users_session_is_not_found(page, nova, marlowe, member, stranger):
    theirs = talk(stranger, nova, "private words", "Private reply.")
    mine = talk(member, nova, "my words", "My reply.")
    log_in(page, "lena", PASSWORD)
    page.console_problems.allow(NOT_FOUND)  # Chromium logs each 404 page it loads

    assert page.goto(f"/chat/nova/?session={theirs.pk}").status == 404
    expect(page.get_by_text("Private reply.")).to_have_count(0)
    assert page.goto(f"/chat/marlowe/?session={mine.pk}").status == 404  # mine, but with another character
    assert page.goto("/chat/nova/?session=not-a-uuid").status == 404
    assert page.goto(f"/sessions/{theirs.pk}/delete").status == 404
    token = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    form = {"csrfmiddlewaretoken": token, "title": "mine now", "confirm": "yes"}
    assert page.request.post(f"/sessions/{theirs.pk}/rename", form=form).status == 404
    assert page.request.post(f"/sessions/{theirs.pk}/delete", form=form).status == 404
    theirs.refresh_from_db()
    assert theirs.title == "" and theirs.deleted_at is None

    open_chat(page, f"/chat/nova/?session={mine.pk}")  # my own opens
    expect(page.locator("#history .msg .text").last).to_have_text("My reply.")
