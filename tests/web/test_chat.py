"""The gallery and the chat page in a real browser, against the real socket and a real LLM worker
(the scripted engine: it echoes the user's words, word by word)."""

import re

import httpx
import pytest
from playwright.sync_api import expect

from apps.characters.models import Character
from tests.web.conftest import PASSWORD, log_in, page_check

pytestmark = pytest.mark.django_db(transaction=True)

# Records each change of the reply being written, so a test can see it arrive in steps.
WATCH_REPLY = """() => {
  window.replySteps = [];
  new MutationObserver(() => {
    const last = document.querySelector('#history .msg-assistant:last-child .text');
    if (last && last.textContent && window.replySteps.at(-1) !== last.textContent) window.replySteps.push(last.textContent);
  }).observe(document.getElementById('history'), {subtree: true, childList: true, characterData: true});
}"""


@pytest.fixture
def cast():
    """Published characters with tags, and a draft nobody may see."""
    make = Character.objects.create
    return {
        "nova": make(
            name="Nova",
            slug="nova",
            persona="You are Nova, a cheerful astronomy guide.",
            description="Points out planets and constellations.",
            greeting="Hi! I'm Nova. Ask me about tonight's sky.",
            tags="space, Science",
            is_published=True,
        ),
        "marlowe": make(
            name="Marlowe",
            slug="marlowe",
            persona="You are Marlowe, a hard-boiled detective.",
            description="A detective who has seen it all.",
            greeting="Name's Marlowe. Talk.",
            tags="mystery, noir",
            is_published=True,
        ),
        "remy": make(
            name="Remy",
            slug="remy",
            persona="You are Remy, a chef.",
            description="Cooks French food; loves a spaceship-shaped cake.",
            tags="cooking, spacecraft",
            is_published=True,
        ),
        "draft": make(name="Hidden", slug="hidden", persona="You are Hidden.", tags="space", is_published=False),
    }


def card_names(page) -> list[str]:
    return page.locator(".gallery .card-title").all_inner_texts()


def test_gallery_search_and_tag_filter(page, cast, member):
    log_in(page, "lena", PASSWORD)
    expect(page.get_by_role("heading", name="Who do you want to talk with?")).to_be_visible()
    assert card_names(page) == ["Marlowe", "Nova", "Remy"]  # published only, by name
    nova = page.locator(".card", has_text="Nova")
    expect(nova.locator(".description")).to_have_text("Points out planets and constellations.")
    expect(nova.locator(".tags li")).to_have_text(["space", "Science"])
    expect(nova.locator("img.avatar")).to_have_attribute("src", re.compile(r"/static/web/avatar\.svg$"))
    expect(page.get_by_role("link", name=re.compile("^Continue"))).to_have_count(0)  # no sessions yet
    page_check(page, "gallery")

    page.get_by_label("Search characters").fill("detective")
    page.get_by_role("button", name="Search").click()
    expect(page).to_have_url(re.compile(r"\?q=detective"))
    assert card_names(page) == ["Marlowe"]
    page.get_by_label("Search characters").fill("nobody-like-this")
    page.get_by_role("button", name="Search").click()
    expect(page.locator(".empty")).to_contain_text("No character matches")
    page_check(page, "gallery-empty")

    page.goto("/")
    page.get_by_role("navigation", name="Filter by tag").get_by_role("link", name="space", exact=True).click()
    assert card_names(page) == ["Nova"]  # a whole tag: not Remy's "spacecraft", not the draft
    expect(page.get_by_role("link", name="space", exact=True).first).to_have_attribute("aria-current", "page")
    page_check(page, "gallery-tag")
    page.get_by_role("navigation", name="Filter by tag").get_by_role("link", name="science").click()
    assert card_names(page) == ["Nova"]  # tags match whatever their case


def send(page, text: str) -> None:
    page.get_by_label(re.compile("^Message to")).fill(text)
    page.keyboard.press("Enter")


def reply_done(page, timeout_s: float = 30) -> None:
    """The reply has ended (turn_end): the send button is back (it stays off from the message sent
    to its turn's end) and nothing is pending."""
    expect(page.locator("#send")).to_be_enabled(timeout=timeout_s * 1000)
    expect(page.locator("#history .msg.pending")).to_have_count(0)


def test_new_chat_greets_and_streams_the_reply(page, cast, member):
    log_in(page, "lena", PASSWORD)
    page.get_by_role("button", name="New chat with Nova").click()
    expect(page).to_have_url(re.compile(r"/chat/nova/$"))
    expect(page.locator("#connection")).to_have_text("Connected")
    first = page.locator("#history .msg").first
    expect(first.locator(".text")).to_have_text("Hi! I'm Nova. Ask me about tonight's sky.")  # greeting on top
    expect(page.locator("#history .msg")).to_have_count(1)
    page_check(page, "chat-new")

    page.evaluate(WATCH_REPLY)
    send(page, "tell me a slow story")  # "slow": the scripted engine takes 50 ms per word
    expect(page.locator("#history .msg-user .text")).to_have_text("tell me a slow story")
    reply_done(page)
    reply = page.locator("#history .msg-assistant").last
    expected = "You said: tell me a slow story. I am Nova. Anything else?"
    expect(reply.locator(".text")).to_have_text(expected)
    expect(reply.locator(".emotion")).to_have_text("happy")  # the response frames' emotion, shown small
    steps = page.evaluate("window.replySteps")
    assert len(steps) >= 3, steps  # streamed from text_delta frames, not dropped in at the end
    assert all(expected.startswith(step.strip()) for step in steps), steps  # each a growing prefix
    expect(page.get_by_role("log")).to_contain_text(expected)  # the polite live region has it
    page_check(page, "chat-reply")

    # The gallery now offers to continue, and the chat page renders the session's history.
    page.goto("/")
    page.get_by_role("link", name="Continue with Nova").click()
    texts = page.locator("#history .msg .text").all_inner_texts()
    assert texts == ["Hi! I'm Nova. Ask me about tonight's sky.", "tell me a slow story", expected]
    expect(page.locator("#history .msg-assistant .emotion")).to_have_text("happy")
    expect(page.locator("#connection")).to_have_text("Connected")

    # New chat starts an empty session that opens with the greeting again.
    page.get_by_role("button", name="New chat").click()
    expect(page.locator("#history .msg .text")).to_have_text(["Hi! I'm Nova. Ask me about tonight's sky."])
    expect(page.locator("#connection")).to_have_text("Connected")
    send(page, "second session")
    reply_done(page)
    expect(page.locator("#history .msg-assistant .text").last).to_have_text(
        "You said: second session. I am Nova. Anything else?"
    )


PAYLOAD = "<img src=x onerror=alert(1)><script>alert(2)</script>"


def test_markup_from_user_and_model_is_inert_text(page, cast, member):
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    log_in(page, "lena", PASSWORD)
    page.goto("/chat/nova/")
    expect(page.locator("#connection")).to_have_text("Connected")
    send(page, PAYLOAD)
    reply_done(page)
    # The model repeats the markup; both bubbles show it as the characters typed.
    expect(page.locator("#history .msg-user .text")).to_have_text(PAYLOAD)
    expect(page.locator("#history .msg-assistant .text").last).to_contain_text(f"You said: {PAYLOAD}")
    assert page.locator("#history img, #history script").count() == 0

    page.reload()  # the same, rendered by the server from the saved history
    expect(page.locator("#connection")).to_have_text("Connected")
    expect(page.locator("#history .msg-user .text")).to_have_text(PAYLOAD)
    expect(page.locator("#history .msg-assistant .text").last).to_contain_text(f"You said: {PAYLOAD}")
    assert page.locator("#history img, #history script").count() == 0
    page.wait_for_timeout(300)  # an onerror would have fired by now
    assert dialogs == []


def test_socket_dropped_by_the_server_reconnects_with_history(page, web, cast, member):
    log_in(page, "lena", PASSWORD)
    page.get_by_role("button", name="New chat with Marlowe").click()
    expect(page.locator("#connection")).to_have_text("Connected")
    send(page, "before the restart")
    reply_done(page)

    # Chromium itself logs each refused reconnection while the server is down.
    page.console_problems.allow(r"^error: WebSocket connection to 'ws://[^']+/ws' failed: .*ERR_CONNECTION_REFUSED$")
    web.stop()  # every socket drops, as in a deploy
    expect(page.locator("#connection")).to_contain_text("reconnecting")
    page_check(page, "chat-reconnecting")
    web.start()
    expect(page.locator("#connection")).to_have_text("Connected", timeout=30_000)
    texts = page.locator("#history .msg .text").all_inner_texts()
    assert texts == [
        "Name's Marlowe. Talk.",
        "before the restart",
        "You said: before the restart. I am Marlowe. Anything else?",
    ]

    send(page, "after the restart")  # the same session goes on
    reply_done(page)
    page.reload()
    assert page.locator("#history .msg .text").all_inner_texts()[-1] == (
        "You said: after the restart. I am Marlowe. Anything else?"
    )
    expect(page.locator("#history .msg")).to_have_count(5)


def test_pages_send_a_strict_content_security_policy(web, member):
    page = httpx.get(f"{web.url}/login/")
    policy = page.headers["content-security-policy"]
    host = web.url.removeprefix("http://")
    assert "default-src 'self'" in policy and "script-src 'self'" in policy and "style-src 'self'" in policy
    assert f"connect-src 'self' ws://{host} wss://{host}" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert "content-security-policy" not in httpx.get(f"{web.url}/admin/login/").headers  # the admin's inline script
    static = httpx.get(f"{web.url}/static/web/chat.js")
    assert static.status_code == 200 and "text/javascript" in static.headers["content-type"]
