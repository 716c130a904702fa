import pytest

from tests.conftest import chroma_empty


@pytest.fixture(autouse=True)
def _empty_index():
    """Each test's database starts empty (rows are flushed), so the derived index must too."""
    chroma_empty()
    yield


@pytest.fixture
def other_user(django_user_model):
    return django_user_model.objects.create_user(username="bob", password="pw")
