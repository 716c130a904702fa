"""Who may call /api/v1/ (an API token, or the logged-in session with CSRF on unsafe methods), my API
tokens (the key shown once; revoked, it stops working), and the one error shape for every failure."""

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db(transaction=True)

PROTECTED = [
    ("get", "/api/v1/sessions"),
    ("post", "/api/v1/sessions"),
    ("get", "/api/v1/sessions/00000000-0000-0000-0000-000000000000/messages"),
    ("get", "/api/v1/memories"),
    ("get", "/api/v1/memories/search"),
    ("get", "/api/v1/tokens"),
    ("post", "/api/v1/tokens"),
    ("post", "/api/v1/tts"),
    ("post", "/api/v1/asr/jobs"),
    ("get", "/api/v1/asr/jobs/00000000-0000-0000-0000-000000000000"),
]


@pytest.mark.parametrize("method, path", PROTECTED)
@pytest.mark.parametrize("auth", [{}, {"HTTP_AUTHORIZATION": "Bearer pt_not-a-real-key"}])
def test_no_or_a_wrong_token_is_401_in_the_error_shape(client, method, path, auth):
    response = getattr(client, method)(path, **auth)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "auth_failed" and response.json()["error"]["message"]
    assert set(response.json()) == {"error"} and set(response.json()["error"]) == {"code", "message"}
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'


def test_a_token_is_shown_once_then_authenticates_and_revoked_stops(client, alice, bob):
    created = client.post("/api/v1/tokens", {"name": "my script"}, content_type="application/json", **alice.auth)
    assert created.status_code == 201 and created["Cache-Control"] == "no-store"
    token = created.json()
    assert token["key"].startswith(token["prefix"]) and token["name"] == "my script"
    new_auth = {"HTTP_AUTHORIZATION": f"Bearer {token['key']}"}

    mine = client.get("/api/v1/sessions", **new_auth)
    assert mine.status_code == 200 and mine.json()["results"][0]["id"] == str(alice.session.pk)
    listed = client.get("/api/v1/tokens", **new_auth).json()
    assert [t["name"] for t in listed["results"]] == ["my script", "alice's laptop"]  # newest first, bob's not
    assert token["key"] not in str(listed) and alice.key not in str(listed)  # never the key again
    assert set(listed["results"][0]) == {"id", "name", "prefix", "created_at", "last_used_at"}
    assert listed["results"][0]["last_used_at"] is not None  # it was just used
    assert client.get(f"/api/v1/tokens/{token['id']}", **alice.auth).json()["name"] == "my script"

    assert client.delete(f"/api/v1/tokens/{token['id']}", **alice.auth).status_code == 204
    refused = client.get("/api/v1/sessions", **new_auth)
    assert (refused.status_code, refused.json()["error"]["code"]) == (401, "auth_failed")
    again = client.delete(f"/api/v1/tokens/{token['id']}", **alice.auth)
    assert (again.status_code, again.json()["error"]["code"]) == (404, "unknown_token")
    assert client.get("/api/v1/sessions", **alice.auth).status_code == 200  # the other key still works


def test_someone_elses_token_is_not_found_and_stays_live(client, alice, bob):
    bobs = client.get("/api/v1/tokens", **bob.auth).json()["results"][0]["id"]
    for call in (client.get, client.delete):
        response = call(f"/api/v1/tokens/{bobs}", **alice.auth)
        assert (response.status_code, response.json()["error"]["code"]) == (404, "unknown_token")
    for token_id in ("0", "x", "99999999999999999999999"):
        assert client.get(f"/api/v1/tokens/{token_id}", **alice.auth).status_code == 404
    assert client.get("/api/v1/sessions", **bob.auth).status_code == 200


@pytest.mark.parametrize(
    "body, code", [({}, "missing_field"), ({"name": ""}, "invalid_field"), ({"name": "n" * 101}, "invalid_field")]
)
def test_bad_token_names(client, alice, body, code):
    response = client.post("/api/v1/tokens", body, content_type="application/json", **alice.auth)
    assert (response.status_code, response.json()["error"]["code"]) == (400, code)


def test_session_auth_needs_csrf_for_unsafe_methods(alice):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(alice.user)
    assert browser.get("/api/v1/sessions").status_code == 200  # reads need no token

    refused = browser.post("/api/v1/tokens", {"name": "x"}, content_type="application/json")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "permission_denied" and "CSRF" in refused.json()["error"]["message"]
    refused = browser.post("/api/v1/tts", {"text": "hi"}, content_type="application/json")  # the async views too
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "permission_denied")
    refused = browser.post("/api/v1/asr/jobs", b"RIFF", content_type="audio/wav")
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "permission_denied")

    browser.get("/account/")  # a page sets the CSRF cookie, as the web app's pages do
    csrf = browser.cookies["csrftoken"].value
    created = browser.post("/api/v1/tokens", {"name": "x"}, content_type="application/json", HTTP_X_CSRFTOKEN=csrf)
    assert created.status_code == 201
    # a token needs no CSRF token: nothing a browser sends on its own
    assert Client(enforce_csrf_checks=True).get("/api/v1/tokens", **alice.auth).status_code == 200


def test_errors_of_the_request_itself_have_the_shape_and_a_code(client, alice):
    cases = [
        (client.put("/api/v1/sessions", {}, content_type="application/json", **alice.auth), 405, "method_not_allowed"),
        (client.post("/api/v1/sessions", b"{oops", content_type="application/json", **alice.auth), 400, "invalid_json"),
        (
            client.post("/api/v1/sessions", b"[" * 100 + b"]" * 100, content_type="application/json", **alice.auth),
            400,
            "invalid_json",
        ),
        (
            client.post("/api/v1/sessions", b'{"character": NaN}', content_type="application/json", **alice.auth),
            400,
            "invalid_json",
        ),
        (
            client.post(
                "/api/v1/sessions", b"character=nova", content_type="application/x-www-form-urlencoded", **alice.auth
            ),
            415,
            "unsupported_media_type",
        ),
        (client.get("/api/v1/no/such/thing", **alice.auth), 404, "not_found"),
        (client.get("/api/v1/sessions", {"page": 99}, **alice.auth), 404, "not_found"),
        (client.get("/api/v1/sessions", {"page": "two"}, **alice.auth), 400, "invalid_field"),
        (client.get("/api/v1/sessions", HTTP_ACCEPT="text/html", **alice.auth), 406, "not_acceptable"),
    ]
    for response, status, code in cases:
        assert response.status_code == status, (code, response.content)
        assert response["Content-Type"] == "application/json"
        assert set(response.json()["error"]) == {"code", "message"} and response.json()["error"]["code"] == code
    too_big = client.post(
        "/api/v1/tokens", b'{"name": "' + b"x" * (1024 * 1024) + b'"}', content_type="application/json", **alice.auth
    )
    assert (too_big.status_code, too_big.json()["error"]["code"]) == (413, "request_too_large")
