"""Static files through WhiteNoise on both of Django's paths: the event loop (Daphne, AsyncClient) and
a thread (WSGI, the test client), with files found on disk per request (DEBUG) or listed at start."""

from pathlib import Path

import pytest
from django.test import AsyncClient, Client, override_settings

from personatalk.static_files import AsyncWhiteNoiseMiddleware

CSS = (Path(__file__).resolve().parent.parent / "apps/web/static/web/app.css").read_bytes()


async def body(response) -> bytes:
    content = response.streaming_content  # a file is read by a plain iterator, even on the loop
    if hasattr(content, "__aiter__"):
        return b"".join([chunk async for chunk in content])
    return b"".join(content)


@pytest.mark.parametrize("debug", [True, False])
async def test_static_files_are_served_on_the_event_loop(debug, tmp_path):
    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "app.css").write_bytes(CSS)
    with override_settings(DEBUG=debug, STATIC_ROOT=tmp_path):
        response = await AsyncClient().get("/static/web/app.css")
        assert response.status_code == 200 and await body(response) == CSS
        assert (await AsyncClient().get("/static/web/missing.css")).status_code == 404


def test_static_files_are_served_on_the_sync_path_too(tmp_path):
    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "app.css").write_bytes(CSS)
    with override_settings(DEBUG=False, STATIC_ROOT=tmp_path):
        response = Client().get("/static/web/app.css")
        assert response.status_code == 200 and b"".join(response.streaming_content) == CSS


def test_the_middleware_is_async_capable():
    assert AsyncWhiteNoiseMiddleware.async_capable and AsyncWhiteNoiseMiddleware.sync_capable
