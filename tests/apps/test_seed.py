"""`manage.py seed_demo`: the demo user, token, voice and characters, created once."""

import io

import pytest
from django.core.management import call_command

from apps.accounts.models import ApiToken, User
from apps.accounts.services import token_authenticate
from apps.characters.demo import DEMO_CHARACTERS
from apps.characters.models import Character, Voice

pytestmark = pytest.mark.django_db


def _seed() -> str:
    out = io.StringIO()
    call_command("seed_demo", stdout=out)
    return out.getvalue()


def _counts() -> dict[str, int]:
    return {m.__name__: m.objects.count() for m in (User, ApiToken, Voice, Character)}


@pytest.fixture
def demo_settings(settings):
    settings.DEMO_USERNAME = "demo"
    settings.DEMO_PASSWORD = "demo-pw"
    settings.DEMO_API_TOKEN = "pt-test-demo-token"
    return settings


def test_seed_demo_creates_demo_data(demo_settings):
    out = _seed()

    assert "created user demo" in out
    assert "created character nova" in out
    user = User.objects.get(username="demo")
    assert user.is_staff and user.check_password("demo-pw")
    token = token_authenticate(key="pt-test-demo-token")
    assert token is not None and token.user == user

    joe = Voice.objects.get(name="joe")
    assert (joe.engine, joe.model, joe.language) == ("piper", "en_US-joe-medium", "en")
    characters = Character.objects.filter(slug__in=["nova", "sage", "captain"])
    assert characters.count() == 3
    for c in characters:
        assert c.is_published and c.voice == joe
        assert c.persona.startswith("You are ") and c.greeting and c.example_dialogue and c.tag_list


def test_seed_demo_twice_changes_nothing(demo_settings):
    _seed()
    before = _counts()
    out = _seed()

    assert _counts() == before == {"User": 1, "ApiToken": 1, "Voice": 1, "Character": len(DEMO_CHARACTERS)}
    assert "created" not in out.replace("demo data ready", "")
    assert token_authenticate(key="pt-test-demo-token") is not None


def test_seed_demo_leaves_staff_edits_alone(demo_settings):
    _seed()
    Character.objects.filter(slug="nova").update(persona="You are Nova, edited.", is_published=False)
    _seed()
    nova = Character.objects.get(slug="nova")
    assert (nova.persona, nova.is_published) == ("You are Nova, edited.", False)


def test_seed_demo_without_token_setting_creates_no_token(demo_settings):
    demo_settings.DEMO_API_TOKEN = ""
    out = _seed()
    assert ApiToken.objects.count() == 0
    assert "no demo API token" in out
    assert User.objects.filter(username="demo").exists()


def test_seed_demo_never_resets_a_password(demo_settings):
    _seed()
    user = User.objects.get(username="demo")
    user.set_password("my-own-secret")
    user.save()
    demo_settings.DEMO_PASSWORD = "something-else"
    _seed()  # every start of `make run` and of the compose migrate job runs it
    user.refresh_from_db()
    assert user.check_password("my-own-secret") and not user.check_password("demo-pw")
    assert not user.check_password("something-else")


def test_seed_demo_leaves_an_existing_account_of_that_name_alone(demo_settings, django_user_model):
    owner = django_user_model.objects.create_user(username="demo", password="chosen-by-owner")
    _seed()
    owner.refresh_from_db()
    assert owner.check_password("chosen-by-owner") and not owner.check_password("demo-pw")


def test_seed_demo_without_a_password_setting_creates_a_user_no_one_can_log_in_as(demo_settings, client):
    demo_settings.DEMO_PASSWORD = ""
    out = _seed()
    user = User.objects.get(username="demo")
    assert not user.has_usable_password() and "changepassword demo" in out
    for guess in ("", "demo", "password"):
        assert not client.login(username="demo", password=guess)
