"""Swagger UI at /api/docs, in a real browser: it renders the schema from this server's own files under
the site's Content-Security-Policy (a blocked script or style is a console error, which fails the test)."""

import re

import pytest

from tests.web.conftest import ARTIFACTS

pytestmark = pytest.mark.django_db(transaction=True)


def test_swagger_ui_renders_the_api_from_local_files(page, web):
    requested = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto("/api/docs")
    page.get_by_role("heading", name=re.compile("PersonaTalk API")).wait_for()
    page.get_by_text("/api/v1/sessions/{session_id}/messages").first.wait_for()
    page.get_by_text("/api/tts", exact=True).first.wait_for()  # an old path, listed as deprecated
    assert all(url.startswith(web.url) for url in requested), [u for u in requested if not u.startswith(web.url)]
    page.screenshot(path=str(ARTIFACTS / "api-docs.png"))  # (no axe audit: Swagger UI's markup is not ours)
