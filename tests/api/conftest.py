import pytest

from tests import stack
from tests.conftest import LOG_DIR


@pytest.fixture(scope="session")
def daphne_url(live_env) -> str:
    """A live Daphne of the scaled stack (real HTTP: streaming, disconnects), for the tests of tests/api."""
    proc, url = stack.start_daphne(env=live_env, log_dir=LOG_DIR)
    yield url
    proc.stop()
