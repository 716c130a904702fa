"""The OpenAPI schema's shared parts: the one error shape, and the error answers every operation can give.

`add_error_responses` is a drf-spectacular postprocessing hook (SPECTACULAR_SETTINGS): views declare
their successes; the errors any operation can answer (400, 401, 403, 404, 415, and 429 where a quota
counts it, marked with the `x-quota` extension) are added here once, all in the `Error` shape.
"""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.plumbing import build_bearer_security_scheme_object

from apps.realtime.protocol import ErrorCode

ERROR_REF = {"$ref": "#/components/schemas/Error"}
OPENAI_ERROR_REF = {"$ref": "#/components/schemas/OpenAIError"}
OPENAI_PREFIX = "/v1/"  # the OpenAI-compatible paths answer errors in OpenAI's shape, which its clients parse

ERROR_SCHEMA = {
    "type": "object",
    "description": "Every error of the API. `code` is stable (docs/protocol.md lists each one's meaning).",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {"type": "string", "enum": sorted(ErrorCode.DESCRIPTIONS)},
                "message": {"type": "string", "description": "For people; may change."},
                "retry_after": {"type": "number", "description": "429 only: seconds until a retry may pass."},
            },
            "required": ["code", "message"],
            "additionalProperties": False,
        }
    },
    "required": ["error"],
    "additionalProperties": False,
}

OPENAI_ERROR_SCHEMA = {
    "type": "object",
    "description": "An error of the OpenAI-compatible endpoints, in OpenAI's own shape.",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string", "description": "invalid_request_error, authentication_error, …"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"], "description": "invalid_api_key, model_not_found, …"},
            },
            "required": ["message", "type", "param", "code"],
        }
    },
    "required": ["error"],
}

_MEANINGS = {
    "400": "The request is not valid (`missing_field`, `invalid_field`, `invalid_json`, …).",
    "401": "No credentials, or an unknown or revoked API token (`auth_failed`).",
    "403": "Logged-in session without a CSRF token on an unsafe method (`permission_denied`).",
    "404": "Not found, or not yours: another user's object answers the same (`unknown_session`, `not_found`, …).",
    "413": "The body is over the size limit (`request_too_large`, `audio_too_large`).",
    "415": "The body's Content-Type is not one this operation reads (`unsupported_media_type`).",
    "411": "A multipart upload without a Content-Length header (`missing_field`).",
    "502": "The worker failed (`tts_failed`, …).",
    "503": "The memory index could not be searched just now (`memory_unavailable`).",
    "504": "No worker answered in time (`tts_timeout`, `asr_timeout`, `memory_timeout`).",
    "429": "Over the quota this operation counts against (`rate_limited`); `Retry-After` says when to retry.",
}


def error_response(status: str, description: str | None = None) -> dict:
    response = {"description": description or _MEANINGS[status], "content": {"application/json": {"schema": ERROR_REF}}}
    if status == "429":
        response["headers"] = {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait."}}
    return response


def add_error_responses(result: dict, generator, request, public) -> dict:
    """Add the `Error` component and the error answers to every operation (those a view declared stay)."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas["Error"], schemas["OpenAIError"] = ERROR_SCHEMA, OPENAI_ERROR_SCHEMA
    for path, methods in result.get("paths", {}).items():
        shape = OPENAI_ERROR_REF if path.startswith(OPENAI_PREFIX) else ERROR_REF
        for method, operation in methods.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            statuses = ["400", "404"]
            if operation.get("security") and {} not in operation["security"]:
                statuses.append("401")
            if method in ("post", "put", "patch", "delete"):
                statuses.append("403")
            if "requestBody" in operation:
                statuses += ["413", "415"]
            if "x-quota" in operation:
                statuses.append("429")
            for status in sorted(statuses):
                operation["responses"].setdefault(status, error_response(status))
            for status, response in operation["responses"].items():
                if status[0] in "45" and "$ref" not in response:  # every error is the path's error shape
                    response["content"] = {"application/json": {"schema": shape}}
                    if response.get("description") in ("", None, "No response body"):
                        response["description"] = _MEANINGS.get(status, "An error.")
    return result


class ApiTokenScheme(OpenApiAuthenticationExtension):
    """Documents ApiTokenAuthentication as HTTP bearer auth (Swagger UI's Authorize button takes the key)."""

    target_class = "apps.api.v1.auth.ApiTokenAuthentication"
    name = "ApiToken"

    def get_security_definition(self, auto_schema):
        return build_bearer_security_scheme_object(header_name="Authorization", token_prefix="Bearer")
