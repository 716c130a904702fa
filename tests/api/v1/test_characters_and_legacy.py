"""/api/v1/characters and voices (public; drafts only for staff who edit characters), the schema and
Swagger UI, and the old paths: still answering as before, marked deprecated."""

import pytest
from django.contrib.auth.models import Permission

from apps.characters.models import Voice

pytestmark = pytest.mark.django_db(transaction=True)


def test_characters_are_the_published_ones_for_anyone(client, character, draft_character):
    Voice.objects.create(name="joe", engine="piper", model="en_US-joe-medium")
    character.voice = Voice.objects.get(name="joe")
    character.tags = "space, science"
    character.save()
    listed = client.get("/api/v1/characters").json()
    assert listed["count"] == 1
    assert listed["results"][0] == {
        "name": "nova",
        "display_name": "Nova",
        "description": "",
        "greeting": "Hi! I'm Nova.",
        "language": "en",
        "tags": ["space", "science"],
        "voice": "joe",
        "avatar_url": None,
        "is_published": True,
    }
    assert client.get("/api/v1/characters/nova").json()["display_name"] == "Nova"
    hidden = client.get("/api/v1/characters/draft")
    assert (hidden.status_code, hidden.json()["error"]["code"]) == (404, "unknown_character")
    voices = client.get("/api/v1/voices").json()["results"]
    assert voices == [{"name": "joe", "engine": "piper", "language": "en", "speed": 1.0}]


def test_staff_who_edit_characters_also_see_drafts(client, character, draft_character, django_user_model):
    editor = django_user_model.objects.create_user(username="ed", is_staff=True)
    staff_only = django_user_model.objects.create_user(username="st", is_staff=True)
    editor.user_permissions.add(Permission.objects.get(codename="change_character"))
    client.force_login(staff_only)
    assert [c["name"] for c in client.get("/api/v1/characters").json()["results"]] == ["nova"]
    client.force_login(editor)
    listed = client.get("/api/v1/characters").json()["results"]
    assert [(c["name"], c["is_published"]) for c in listed] == [("draft", False), ("nova", True)]
    assert client.get("/api/v1/characters/draft").status_code == 200


def test_schema_and_swagger_ui_are_served_from_here(client):
    schema = client.get("/api/v1/schema")
    assert schema.status_code == 200 and schema["Content-Type"].startswith("application/vnd.oai.openapi+json")
    paths = schema.json()["paths"]
    assert {"/api/v1/sessions", "/api/v1/asr/jobs", "/api/v1/asr/jobs/{job_id}", "/api/v1/tokens"} <= set(paths)
    assert schema.json()["components"]["securitySchemes"]["ApiToken"] == {"type": "http", "scheme": "bearer"}
    unauthorized = paths["/api/v1/sessions"]["get"]["responses"]["401"]
    assert unauthorized["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
    assert paths["/api/v1/tts"]["post"]["responses"]["429"]["headers"]["Retry-After"]

    page = client.get("/api/docs")
    assert page.status_code == 200
    html = page.content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in html  # no CDN
    assert "cdn" not in html.lower()
    policy = page["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-eval" not in policy
    script = client.get("/api/docs", {"script": ""})  # the page's own script is a file: no inline script
    assert script.status_code == 200 and "SwaggerUIBundle" in script.content.decode()
    assert "/api/v1/schema" in script.content.decode()


@pytest.mark.parametrize(
    "path, method, successor",
    [
        ("/characters", "get", "/api/v1/characters"),
        ("/api/voices", "get", "/api/v1/voices"),
        ("/api/tts", "post", "/api/v1/tts"),
        ("/api/asr", "post", "/api/v1/asr/jobs"),
        ("/api/memories", "get", "/api/v1/memories"),
        ("/api/memories/{memory_id}", "delete", "/api/v1/memories/{memory_id}"),
    ],
)
def test_old_paths_answer_as_before_and_are_deprecated(client, alice, path, method, successor):
    operation = client.get("/api/v1/schema").json()["paths"][path][method]
    assert operation["deprecated"] is True
    response = getattr(client, method)(path.format(memory_id=alice.memory.pk), **alice.auth)
    assert response["Deprecation"] == "@1796342400"
    assert response["Link"] == f'<{successor}>; rel="successor-version"'
    assert "Deprecation" not in client.get("/api/v1/voices")


def test_old_paths_keep_their_shapes(client, alice, character):
    assert client.get("/characters").json()["characters"][0]["name"] == "nova"
    assert client.get("/api/voices").json() == {"voices": []}
    listed = client.get("/api/memories", **alice.auth).json()
    assert [m["text"] for m in listed["memories"]] == ["The user plays the cello."]
    assert client.delete(f"/api/memories/{alice.memory.pk}", **alice.auth).status_code == 204
    assert client.get("/api/v1/memories", **alice.auth).json()["count"] == 0
