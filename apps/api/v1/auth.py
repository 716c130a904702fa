"""`Authorization: Bearer <api token>` for the REST API (the key of an ApiToken, as the socket takes it)."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed

from apps.accounts.services import token_authenticate


class ApiTokenAuthentication(BaseAuthentication):
    """A live API token's user (request.auth is the token); no Bearer header: not this scheme."""

    keyword = b"bearer"

    def authenticate(self, request):
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != self.keyword:
            return None
        if len(parts) != 2:
            raise AuthenticationFailed("Send `Authorization: Bearer <api token>`.")
        try:
            key = parts[1].decode()
        except UnicodeDecodeError:
            raise AuthenticationFailed("Unknown or revoked API token.") from None
        token = token_authenticate(key=key)
        if token is None:
            raise AuthenticationFailed("Unknown or revoked API token.")
        return token.user, token

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="api"'  # makes DRF answer 401 (not 403) when credentials are missing


class ApiTokenScheme(OpenApiAuthenticationExtension):
    """The schema's description of the scheme (drf-spectacular finds it by the class path)."""

    target_class = "apps.api.v1.auth.ApiTokenAuthentication"
    name = "apiToken"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "An API token (My account → API tokens)."}
