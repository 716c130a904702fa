import pytest

from tests.realtime.client import close_all


@pytest.fixture(autouse=True)
async def _close_sockets():
    yield
    await close_all()
