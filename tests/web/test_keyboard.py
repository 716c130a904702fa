"""Keyboard and screen-reader use of the web pages in a real browser, on a phone-sized screen (390 px):
the skip link, Tab order through the gallery and the chat page, a visible focus ring on every
control Tab reaches, no sideways scrolling on any page, and the streamed reply kept quiet (busy)
in its polite live region until it is written."""

import re

import pytest
from playwright.sync_api import expect

from apps.characters.models import Character
from apps.conversations.models import Message
from apps.conversations.services import session_create
from tests.web.conftest import log_in, page_check

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "test-pass-4821"
LONG_NAME = "lena_" + "k" * 60  # a username with no break in it, shown in the header
LONG_WORD = "Supercalifragilistic" * 8  # no space to wrap at

# The focused element: its accessible name as a screen reader would take it (roughly), and whether
# its focus ring can be seen (an outline at least 2 px wide, of 3:1 contrast or more with the page).
FOCUSED = """() => {
  const el = document.activeElement;
  if (!el || el === document.body) return null;
  const labelled = el.getAttribute("aria-labelledby");
  const name = (
    el.getAttribute("aria-label")
    || (labelled && document.getElementById(labelled)?.textContent)
    || (el.labels && el.labels[0]?.textContent)
    || el.textContent || ""
  ).replace(/\\s+/g, " ").trim();
  const style = getComputedStyle(el);
  const luminance = (css) => {
    const [r, g, b] = css.match(/[\\d.]+/g).slice(0, 3).map((v) => {
      const c = Number(v) / 255;
      return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const [a, b] = [luminance(style.outlineColor), luminance(getComputedStyle(document.documentElement).backgroundColor)];
  const contrast = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
  const ring = style.outlineStyle !== "none" && parseFloat(style.outlineWidth) >= 2 && contrast >= 3;
  return { tag: el.tagName.toLowerCase(), name, ring };
}"""


@pytest.fixture
def nova():
    return Character.objects.create(
        name="Nova",
        slug="nova",
        persona="You are Nova, a cheerful astronomy guide.",
        description="Points out planets and constellations. " + LONG_WORD,
        greeting="Hi! I'm Nova.",
        tags="space, science",
        is_published=True,
    )


@pytest.fixture
def member(django_user_model):
    return django_user_model.objects.create_user(username=LONG_NAME, password=PASSWORD)


def tab_walk(page, stop_at: str, limit: int = 40) -> list[dict]:
    """Press Tab from the top of the page until a control named `stop_at` has focus; every stop on the way."""
    page.evaluate(  # start from the very top, as on a fresh page load
        """() => { const top = document.createElement("span");
          top.id = "tab-start"; top.tabIndex = -1; document.body.prepend(top); top.focus(); }"""
    )
    stops = []
    for _ in range(limit):
        page.keyboard.press("Tab")
        stops.append(page.evaluate(FOCUSED))
        if stops[-1] and stops[-1]["name"] == stop_at:
            page.evaluate("() => document.getElementById('tab-start').remove()")
            return stops
    raise AssertionError(f"Tab never reached {stop_at!r}: {[s and s['name'] for s in stops]}")


def in_order(names: list[str], expected: list[str]) -> bool:
    """`expected` appear in `names` in this order (other stops may come between)."""
    it = iter(names)
    return all(any(n == e for n in it) for e in expected)


def no_sideways_scroll(page, name: str) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"{name}: the page is {width} px wide on a 390 px screen"


def test_gallery_by_keyboard(page, nova, member):
    log_in(page, LONG_NAME, PASSWORD)
    stops = tab_walk(page, "New chat with Nova")
    names = [s["name"] for s in stops]
    assert names[0] == "Skip to main content"  # the first stop, so the header can be skipped
    assert in_order(
        names,
        [
            "Skip to main content",
            "PersonaTalk",
            "Password",
            "Log out",
            "Search characters",
            "Search",
            "All",
            "space",
            "science",
            "New chat with Nova",
        ],
    ), names
    assert all(s["name"] for s in stops), stops  # every control has a name
    assert all(s["ring"] for s in stops), [s for s in stops if not s["ring"]]  # and a visible focus ring
    no_sideways_scroll(page, "gallery")

    # The skip link jumps over the header: the next Tab is the first control of the page's content.
    tab_walk(page, "Skip to main content")
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    assert page.evaluate(FOCUSED)["name"] == "Search characters"

    # A chat opened and written in from the keyboard alone.
    tab_walk(page, "New chat with Nova")
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/chat/nova/$"))
    expect(page.locator("#connection")).to_have_text("Connected")


def test_chat_page_by_keyboard(page, nova, member):
    session = session_create(user=member, character=nova)
    Message.objects.create(session=session, role="user", content="hello " + LONG_WORD)
    Message.objects.create(session=session, role="assistant", content="Hello back. " + LONG_WORD)
    session.title = LONG_WORD
    session.save()
    log_in(page, LONG_NAME, PASSWORD)
    page.goto("/chat/nova/")
    expect(page.locator("#connection")).to_have_text("Connected")
    stops = tab_walk(page, "Search")
    names = [s["name"] for s in stops]
    assert in_order(
        names,
        [
            "Skip to main content",
            "Log out",
            "Conversation with Nova",
            "Message to Nova",
            "Send",
            "Regenerate the last reply",
            "New chat",
            "Your chats with Nova",
        ],
    ), names
    assert "Stop" not in names  # off (and out of the Tab order) while no reply is being written
    assert all(s["name"] for s in stops), stops
    assert all(s["ring"] for s in stops), [s for s in stops if not s["ring"]]
    no_sideways_scroll(page, "chat")

    # Write and send from the keyboard; focus stays in the message box through the reply.
    tab_walk(page, "Message to Nova")
    page.keyboard.type("tell me a slow story")
    page.evaluate(
        """() => { window.busySeen = false;
          new MutationObserver(() => { if (document.querySelector('#history [aria-busy="true"]')) window.busySeen = true; })
            .observe(document.getElementById('history'), {subtree: true, childList: true, attributes: true}); }"""
    )
    page.keyboard.press("Enter")
    expect(page.locator("#history .msg-assistant").last.locator(".text")).to_have_text(
        "You said: tell me a slow story. I am Nova. Anything else?", timeout=30_000
    )
    expect(page.locator("#send")).to_be_enabled()
    log = page.get_by_role("log")
    expect(log).to_have_attribute("aria-live", "polite")
    assert page.evaluate("window.busySeen")  # the reply was busy (not read word by word) while written
    expect(log.locator("[aria-busy]")).to_have_count(0)  # and is read once, whole, when done
    assert page.evaluate(FOCUSED)["name"] == "Message to Nova"
    no_sideways_scroll(page, "chat after a reply")

    # The sidebar's rename/delete controls open from the keyboard, then the delete confirmation.
    page.locator(".session-manage summary").first.focus()
    page.keyboard.press("Enter")
    page.get_by_role("link", name="Delete…").focus()
    assert page.evaluate(FOCUSED)["ring"]
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Delete this chat?")).to_be_visible()
    no_sideways_scroll(page, "delete confirmation")
    page.goto(f"/sessions/search/?q={LONG_WORD[:20]}")
    expect(page.locator(".hit")).to_have_count(1)
    no_sideways_scroll(page, "session search")
    page_check(page, "session-search-narrow")


def test_account_pages_fit_a_phone(page, nova, member):
    for path, name in [("/login/", "login"), ("/signup/", "signup"), ("/password/reset/", "password reset")]:
        page.goto(path)
        no_sideways_scroll(page, name)
        stops = tab_walk(page, "Skip to main content")
        assert stops[0]["ring"]
    page.goto("/password/reset/sent/")
    no_sideways_scroll(page, "password reset sent")
    log_in(page, LONG_NAME, PASSWORD)
    page.goto("/password/change/")
    no_sideways_scroll(page, "password change")
    stops = tab_walk(page, "Change password")
    names = [s["name"] for s in stops]
    assert in_order(names, ["Old password", "New password", "New password confirmation", "Change password"]), names
    assert all(s["ring"] for s in stops), [s for s in stops if not s["ring"]]
    page_check(page, "password-change-long-name")
