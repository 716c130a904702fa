from importlib import import_module

from django.conf import settings
from django.db.models import Exists, F, QuerySet

from apps.accounts import sockets
from apps.accounts.models import ApiToken, User


def access_ended_reason(*, user_id, token_id=None, session_key: str | None = None) -> str | None:
    """Why a socket authenticated as `user_id` (by token, or by login session) may no longer talk; None if it may.

    The live check behind the groups in apps.accounts.sockets: it also catches a user deactivated
    or a token revoked by a path that did not go through the services (a shell, a bulk update).
    """
    checks = {"active": F("is_active")}
    if token_id is not None:  # asked in the same query: it runs before every turn
        checks["token_live"] = Exists(ApiToken.objects.filter(pk=token_id, revoked_at__isnull=True))
    row = next(iter(User.objects.filter(pk=user_id).values(**checks)[:1]), None)  # no ORDER BY: one row
    if row is None or not row["active"]:
        return sockets.USER_DEACTIVATED
    if token_id is not None and not row["token_live"]:
        return sockets.TOKEN_REVOKED
    if session_key is not None and not import_module(settings.SESSION_ENGINE).SessionStore().exists(session_key):
        return sockets.LOGGED_OUT
    return None


def tokens_live(*, user: User) -> QuerySet[ApiToken]:
    """The user's live API tokens, newest first (the key itself is never kept: name, prefix and dates)."""
    return ApiToken.objects.filter(user=user, revoked_at__isnull=True).order_by("-created_at", "-pk")


def tokens_of(*, user: User, limit: int = 100) -> list[ApiToken]:
    """The user's live API tokens, newest first (at most `limit`)."""
    return list(tokens_live(user=user)[:limit])


def token_get_for_user(*, user: User, token_id) -> ApiToken | None:
    """One of the user's live tokens; any other id (malformed, someone else's, revoked) reads as None."""
    try:
        pk = int(str(token_id))
    except ValueError:
        return None
    if not 0 < pk < 2**63:
        return None
    return ApiToken.objects.filter(pk=pk, user=user, revoked_at__isnull=True).first()
