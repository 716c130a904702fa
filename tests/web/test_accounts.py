"""Accounts in a real browser: sign up, log in and out, sign-up closed, password change and reset."""

import re

import pytest
from playwright.sync_api import expect

from tests.web.conftest import LiveServer, log_in, page_check

pytestmark = pytest.mark.django_db(transaction=True)


def test_sign_up_then_log_out_and_in(page, django_user_model):
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login/\?next=/$"))  # every app page needs a login
    page_check(page, "login")

    page.get_by_role("link", name="Create an account").click()
    expect(page.get_by_role("heading", name="Create an account")).to_be_visible()
    page_check(page, "signup")
    page.get_by_label("Username").fill("juno")
    page.get_by_label("Email").fill("juno@example.com")
    page.get_by_label("Password", exact=True).fill("password")
    page.get_by_label("Password confirmation").fill("password")
    page.get_by_role("button", name="Sign up").click()
    expect(page.locator(".field.has-error .error")).to_contain_text("too common")  # validators apply
    page_check(page, "signup-invalid")
    assert not django_user_model.objects.filter(username="juno").exists()

    page.get_by_label("Password", exact=True).fill("orbit-lantern-42")
    page.get_by_label("Password confirmation").fill("orbit-lantern-42")
    page.get_by_role("button", name="Sign up").click()
    expect(page).to_have_url(re.compile(r"/$"))
    expect(page.get_by_role("status")).to_contain_text("Welcome, juno")
    user = django_user_model.objects.get(username="juno")
    assert (user.email, user.is_staff, user.is_superuser) == ("juno@example.com", False, False)

    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/login/$"))
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login/"))  # logged out for real

    page.get_by_label("Username").fill("juno")
    page.get_by_label("Password").fill("wrong-password-1")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_contain_text("correct username and password")
    log_in(page, "juno", "orbit-lantern-42")
    expect(page.locator(".who-am-i")).to_have_text("juno")


@pytest.fixture
def closed_site(web_env):
    server = LiveServer({**web_env, "SIGNUP_OPEN": "false"})
    yield server
    server.stop()


def test_sign_up_closed(closed_site, open_page, django_user_model):
    page = open_page(closed_site.url)
    page.goto("/login/")
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    expect(page.get_by_role("link", name=re.compile("sign up|create an account", re.I))).to_have_count(0)

    page.goto("/signup/")
    expect(page.get_by_role("heading", name="Sign-up is closed")).to_be_visible()
    expect(page.locator("form input[name=username]")).to_have_count(0)
    page_check(page, "signup-closed")

    # A hand-made POST with a valid CSRF token is refused too.
    csrf = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    form = {"username": "mallory", "email": "m@example.com", "password1": "orbit-lantern-42"}
    refused = page.request.post(
        "/signup/",
        form={**form, "password2": form["password1"], "csrfmiddlewaretoken": csrf},
        headers={"X-CSRFToken": csrf, "Referer": closed_site.url + "/signup/"},
    )
    assert refused.status == 403 and "Sign-up is closed" in refused.text()
    assert not django_user_model.objects.filter(username="mallory").exists()
    # Without its CSRF token the login form is refused (CSRF on every form).
    assert page.request.post("/login/", form={"username": "x", "password": "y"}).status == 403


def test_password_change(page, django_user_model):
    django_user_model.objects.create_user(username="iris", password="first-secret-77")
    log_in(page, "iris", "first-secret-77")
    page.get_by_role("link", name="Password").click()
    expect(page.get_by_role("heading", name="Change your password")).to_be_visible()
    page_check(page, "password-change")
    page.get_by_label("Old password").fill("first-secret-77")
    page.get_by_label("New password", exact=True).fill("second-secret-88")
    page.get_by_label("New password confirmation").fill("second-secret-88")
    page.get_by_role("button", name="Change password").click()
    expect(page.get_by_role("heading", name="Password changed")).to_be_visible()
    page_check(page, "password-change-done")

    page.get_by_role("button", name="Log out").click()
    page.get_by_label("Username").fill("iris")
    page.get_by_label("Password").fill("first-secret-77")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_be_visible()  # the old password is gone
    log_in(page, "iris", "second-secret-88")


def test_password_reset_by_e_mail(page, django_user_model, mail_dir):
    django_user_model.objects.create_user(username="otto", email="otto@example.com", password="forgotten-9-pw")
    page.goto("/login/")
    page.get_by_role("link", name="Forgot your password?").click()
    page_check(page, "password-reset")
    page.get_by_label("Email").fill("otto@example.com")
    page.get_by_role("button", name="Send the link").click()
    expect(page.get_by_role("heading", name="Check your e-mail")).to_be_visible()
    page_check(page, "password-reset-sent")

    mails = [p.read_text() for p in mail_dir.iterdir()]
    sent = [m for m in mails if "To: otto@example.com" in m]
    assert len(sent) == 1, mails
    link = re.search(r"http://\S+/password/reset/\S+/\S+/", sent[0]).group(0)
    page.goto(link)
    expect(page.get_by_role("heading", name="Choose a new password")).to_be_visible()
    page_check(page, "password-reset-confirm")
    page.get_by_label("New password", exact=True).fill("remembered-10-pw")
    page.get_by_label("New password confirmation").fill("remembered-10-pw")
    page.get_by_role("button", name="Set password").click()
    expect(page.get_by_role("heading", name="Password set")).to_be_visible()
    page_check(page, "password-reset-complete")

    page.goto(link)  # a reset link works once
    expect(page.get_by_role("heading", name="This link has expired")).to_be_visible()
    log_in(page, "otto", "remembered-10-pw")
