"""Browser tests of the web app: Debian's chromium driven by Playwright (sync API; these tests are
plain functions, never async: sync Playwright refuses to run inside a running event loop) against a
live Daphne of the scaled stack (PostgreSQL, Redis layer, a real Celery LLM worker).

Every page a test visits can be checked with `page_check`: an axe-core audit (no serious or
critical violation) and a screenshot under artifacts/web/. Any console error or warning, or an
uncaught exception, on any page fails the test that opened it."""

import re
import shutil
from pathlib import Path

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import sync_playwright

from tests import stack
from tests.conftest import LOG_DIR

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = stack.ROOT / "artifacts" / "web"
CHROMIUM_ARGS = [
    "--no-sandbox",  # tests run as root in a container
    "--disable-gpu",
    "--disable-background-networking",  # offline: no update checks, no safe-browsing lists
    "--disable-component-update",
    "--no-first-run",
    "--use-fake-ui-for-media-stream",  # microphone prompts answered yes
    "--use-fake-device-for-media-stream",
]
BLOCKING_IMPACTS = {"serious", "critical"}
PASSWORD = "test-pass-4821"  # the password of every user the browser tests log in as

_axe = Axe()


@pytest.fixture(scope="module")
def browser(live_env, llm_worker):
    """One Chromium per module (torn down with it: see below); each test gets its own context and page.

    Sync Playwright keeps an event loop marked running in this thread, so Django's guard takes the
    tests' own (synchronous) ORM calls for calls from async code: it is switched off in this process
    only, once the database and the worker are up; web_env keeps it off for the Daphne it starts.
    Both last only as long as the module: the async tests that run after it need no running loop
    in this thread and Django's guard on."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make system` installs Debian's chromium")
    with pytest.MonkeyPatch.context() as env, sync_playwright() as playwright:
        env.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        # Playwright mutes audio by default; the voice pages' audio graph must really run.
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, ignore_default_args=["--mute-audio"]
        )
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def static_collected(live_env):
    """The scaled mode serves static files from STATIC_ROOT (whitenoise), as `make run` collects them."""
    stack.manage("collectstatic", "--noinput", "--verbosity", "0", env=live_env)


@pytest.fixture(scope="module")
def mail_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("mail")


@pytest.fixture(scope="module")
def web_env(live_env, mail_dir) -> dict:
    """The live Daphne's environment: the test stack's, with e-mail written to files a test can read."""
    return {
        **live_env,
        "EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend",
        "EMAIL_FILE_PATH": str(mail_dir),
        "DJANGO_ALLOW_ASYNC_UNSAFE": None,  # the server keeps Django's guard (see `browser`)
    }


class LiveServer:
    """A live Daphne serving the web app; `restart` drops every socket, as a deploy or a crash does."""

    def __init__(self, env: dict):
        self.env = env
        self.proc, self.url = stack.start_daphne(env=env, log_dir=LOG_DIR)
        self.port = int(self.url.rsplit(":", 1)[1])

    def stop(self) -> None:
        self.proc.stop()

    def start(self) -> None:
        self.proc, _ = stack.start_daphne(env=self.env, log_dir=LOG_DIR, port=self.port)


@pytest.fixture(scope="module")
def web(web_env, static_collected, llm_worker):
    """One live Daphne per test module."""
    server = LiveServer(web_env)
    yield server
    server.stop()


@pytest.fixture(scope="session", autouse=True)
def _artifacts_fresh():
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)


class ConsoleProblems(list):
    """Console errors and warnings, and uncaught exceptions, of every page of a test's context.

    A test that breaks something on purpose names what the browser will log: `allow(pattern)`."""

    def __init__(self):
        super().__init__()
        self.allowed: list[re.Pattern] = []

    def allow(self, pattern: str) -> None:
        self.allowed.append(re.compile(pattern))

    def unexpected(self) -> list[str]:
        return [p for p in self if not any(a.search(p) for a in self.allowed)]

    def watch(self, page) -> None:
        page.on("console", lambda msg: msg.type in ("error", "warning") and self.append(f"{msg.type}: {msg.text}"))
        page.on("pageerror", lambda exc: self.append(f"uncaught: {exc}"))


def phone_page(browser, base_url: str, *, init_script: str | None = None):
    """A page in a fresh context of `browser` (no cookies, a phone's screen) that records its console
    problems (and those of any page the context opens) in `page.console_problems`."""
    context = browser.new_context(base_url=base_url, viewport={"width": 390, "height": 844})
    context.set_default_timeout(15_000)
    if init_script:
        context.add_init_script(init_script)
    problems = ConsoleProblems()
    context.on("page", problems.watch)
    page = context.new_page()
    page.console_problems = problems
    return page


@pytest.fixture
def open_page(browser):
    """Opens a page in a fresh browser context (no cookies, a phone's screen) on any live server;
    fails the test on console problems of any page it opened."""
    opened = []

    def open_on(base_url: str):
        page = phone_page(browser, base_url)
        opened.append((page.context, page.console_problems))
        return page

    yield open_on
    for context, _ in opened:
        context.close()
    found = [p for _, problems in opened for p in problems.unexpected()]
    assert found == [], f"console errors or warnings: {found}"


@pytest.fixture
def page(open_page, web):
    """A page on this module's live server."""
    return open_page(web.url)


def log_in(page, username: str, password: str) -> None:
    """Log in through the login form (from any page that requires it)."""
    page.goto("/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r"/$"))


def page_check(page, name: str) -> None:
    """Audit the page with axe-core (no serious or critical violations) and save its screenshot."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    page.screenshot(path=str(ARTIFACTS / f"{slug}.png"), full_page=True)
    results = _axe.run(page)
    blocking = [
        f"{v['id']} ({v['impact']}): {v['help']} — {[n['target'] for n in v['nodes']][:5]}"
        for v in results.response["violations"]
        if v["impact"] in BLOCKING_IMPACTS
    ]
    assert blocking == [], f"accessibility violations on {name}: {blocking}"


@pytest.fixture
def member(django_user_model):
    """The user the pages are tried as."""
    return django_user_model.objects.create_user(username="lena", password=PASSWORD)


@pytest.fixture
def stranger(django_user_model):
    """Another user, whose data `member` must never see."""
    return django_user_model.objects.create_user(username="omar", password=PASSWORD)


@pytest.fixture
def marlowe():
    """A second published character."""
    from apps.characters.models import Character

    return Character.objects.create(
        name="Marlowe", slug="marlowe", persona="You are Marlowe, a detective.", is_published=True
    )
