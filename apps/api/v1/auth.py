"""Who is calling the REST API: an API token (`Authorization: Bearer <key>`) or the logged-in session.

`ApiTokenAuthentication` is the DRF authentication class of every /api/v1/ view (and of the text turn
and OpenAI-compatible views); DRF's own `SessionAuthentication` follows it, with its CSRF check for
unsafe methods. `caller_of` and `csrf_refusal` do the same for the async Django views (speech), which
must not let DRF read their body before its size is checked.
"""

from dataclasses import dataclass

from channels.db import database_sync_to_async
from rest_framework.authentication import BaseAuthentication, CSRFCheck, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed

from apps.accounts.models import ApiToken, User
from apps.accounts.services import token_authenticate

SCHEME = "bearer"


def _bearer_key(header: str) -> str | None:
    """The key of a `Bearer <key>` header (any case of the scheme), "" for a malformed one, None for another scheme."""
    scheme, _, key = header.strip().partition(" ")
    if scheme.lower() != SCHEME:
        return None
    key = key.strip()
    return key if key and " " not in key else ""


class ApiTokenAuthentication(BaseAuthentication):
    """`Authorization: Bearer <api token>`. A wrong, revoked or malformed key is a 401 (`auth_failed`),
    never a fall-through to the session: a client that sends a key means to be that key's user."""

    def authenticate(self, request) -> tuple[User, ApiToken] | None:
        try:
            header = get_authorization_header(request).decode("ascii")
        except UnicodeDecodeError:
            raise AuthenticationFailed("The Authorization header is not ASCII.") from None
        key = _bearer_key(header)
        if key is None:
            return None
        if not key:
            raise AuthenticationFailed("Send `Authorization: Bearer <api token>` with one key and nothing after it.")
        token = token_authenticate(key=key)
        if token is None:
            raise AuthenticationFailed("The API token is unknown or revoked.")
        return token.user, token

    def authenticate_header(self, request) -> str:
        # Its presence makes DRF answer 401 (not 403) to a request without credentials.
        return 'Bearer realm="api"'


@dataclass(frozen=True)
class Caller:
    """An authenticated caller of an async view; `token` is None when the session cookie authenticated it."""

    user: User
    token: ApiToken | None


async def caller_of(request) -> Caller | None:
    """The caller of an async Django view (as ApiTokenAuthentication, then the session), or None.

    A Bearer header that does not authenticate gives None, as in the DRF views (never the session's user).
    """
    key = _bearer_key(request.headers.get("Authorization", ""))
    if key is not None:
        token = await database_sync_to_async(token_authenticate)(key=key) if key else None
        return Caller(user=token.user, token=token) if token else None
    user = await request.auser()
    return Caller(user=user, token=None) if user.is_authenticated else None


def csrf_refusal(request) -> str | None:
    """Why Django's CSRF check refuses this request (None: it passes), as DRF's SessionAuthentication checks.

    For session-authenticated unsafe requests only. It may read the body of a form or multipart POST
    (for `csrfmiddlewaretoken`): set the request's upload handlers first to keep that read capped.
    """
    check = CSRFCheck(lambda _request: None)
    check.process_request(request)  # sets request.META["CSRF_COOKIE"]
    return check.process_view(request, None, (), {})
