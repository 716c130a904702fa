"""The OpenAPI schema documents the HTTP turn and the OpenAI-compatible endpoints from their views."""

from drf_spectacular.generators import SchemaGenerator


def test_the_schema_documents_turns_and_the_openai_endpoints():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    turn = schema["paths"]["/api/v1/sessions/{session_id}/turns"]["post"]
    assert turn["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/TurnRequest"}
    assert set(turn["responses"]["200"]["content"]) == {"application/json", "text/event-stream"}
    assert {"400", "401", "404", "409", "429", "502", "504"} <= set(turn["responses"])
    assert {"ApiToken": []} in turn["security"]
    completions = schema["paths"]["/v1/chat/completions"]["post"]
    assert set(completions["responses"]["200"]["content"]) == {"application/json", "text/event-stream"}
    assert any(p["name"] == "X-PersonaTalk-Session" and p["in"] == "header" for p in completions["parameters"])
    assert {"/v1/models", "/v1/models/{model}"} <= set(schema["paths"])
    assert schema["components"]["securitySchemes"]["ApiToken"] == {"type": "http", "scheme": "bearer"}
