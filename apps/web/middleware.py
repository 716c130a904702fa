"""The web app's Content-Security-Policy, with the conversation socket of this very host allowed."""

from csp.middleware import CSPMiddleware, PolicyParts
from django.core.exceptions import DisallowedHost


class ContentSecurityPolicyMiddleware(CSPMiddleware):
    """django-csp's middleware, adding ws:// and wss:// of the request's own host to `connect-src`.

    CSP Level 3 browsers already let `'self'` reach the same host's socket; older ones (Safari
    before 15.4) need the scheme spelled out.
    """

    def get_policy_parts(self, request, response, report_only: bool = False) -> PolicyParts:
        parts = super().get_policy_parts(request, response, report_only)
        if not report_only:
            try:
                host = request.get_host()
            except DisallowedHost:  # the 400 for a foreign Host: no socket to allow
                return parts
            parts.update = {**(parts.update or {}), "connect-src": [f"ws://{host}", f"wss://{host}"]}
        return parts
