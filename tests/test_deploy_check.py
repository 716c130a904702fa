"""`manage.py check --deploy` is clean for the scaled settings with the TLS variables set, and those
settings do what a browser would notice; with none set, plain http keeps working."""

import json
import secrets
import subprocess
import sys

import pytest

from tests.stack import ROOT, merged_env

TLS = {
    "SECURE_SSL_REDIRECT": "true",
    "SESSION_COOKIE_SECURE": "true",
    "CSRF_COOKIE_SECURE": "true",
    "SECURE_HSTS_SECONDS": "31536000",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": "true",
    "SECURE_HSTS_PRELOAD": "true",
    "TRUST_X_FORWARDED_PROTO": "true",
}
OFF = dict.fromkeys(TLS)  # None: unset, whatever this shell has


def scaled_env(live_env: dict, **extra) -> dict:
    """The production settings module (not the test one) in the scaled mode, DEBUG left to its default."""
    return merged_env(
        {
            **live_env,
            **OFF,
            "DJANGO_SETTINGS_MODULE": "personatalk.settings",
            "SECRET_KEY": secrets.token_urlsafe(64),
            "DEBUG": None,
            **extra,
        }
    )


def deploy_check(env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.django_db
def test_check_deploy_is_clean_with_the_tls_variables(live_env):
    result = deploy_check(scaled_env(live_env, **TLS))
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


@pytest.mark.django_db
def test_check_deploy_names_what_is_missing_without_them(live_env):
    result = deploy_check(scaled_env(live_env))
    assert result.returncode != 0
    for code in ("W004", "W008", "W012", "W016"):  # HSTS, SSL redirect, session and CSRF cookies
        assert f"security.{code}" in result.stderr, result.stderr


BROWSE = """
import django, json
django.setup()
from django.test import Client
c = Client()
out = {}
for name, path, headers in [
    ("health", "/health", {}),
    ("admin_http", "/admin/login/", {}),
    ("admin_proxied", "/admin/login/", {"HTTP_X_FORWARDED_PROTO": "https"}),
]:
    r = c.get(path, **headers)
    out[name] = {
        "status": r.status_code,
        "location": r.headers.get("Location", ""),
        "hsts": r.headers.get("Strict-Transport-Security", ""),
        "csrf_secure": bool(r.cookies["csrftoken"]["secure"]) if "csrftoken" in r.cookies else None,
    }
print(json.dumps(out))
"""


def browse(env: dict) -> dict:
    result = subprocess.run([sys.executable, "-c", BROWSE], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.django_db
def test_behind_a_tls_proxy_pages_are_https_only_and_health_checks_still_answer_over_http(live_env):
    seen = browse(scaled_env(live_env, **TLS))
    assert seen["health"]["status"] == 200  # compose's health check calls http://127.0.0.1:8000/health
    assert seen["admin_http"]["status"] == 301
    assert seen["admin_http"]["location"] == "https://testserver/admin/login/"
    proxied = seen["admin_proxied"]
    assert proxied["status"] == 200  # no redirect loop through the proxy
    assert proxied["hsts"] == "max-age=31536000; includeSubDomains; preload" and proxied["csrf_secure"] is True


@pytest.mark.django_db
def test_with_no_tls_variable_plain_http_works(live_env):
    seen = browse(scaled_env(live_env))
    assert seen["admin_http"]["status"] == 200 and seen["admin_http"]["hsts"] == ""
    assert seen["admin_http"]["csrf_secure"] is False
