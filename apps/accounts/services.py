import hashlib
import secrets
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.accounts import sockets
from apps.accounts.models import ApiToken, User


def token_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class IssuedToken:
    token: ApiToken
    key: str  # the only time the plain key exists outside the client


def token_create(*, user: User, name: str, key: str | None = None) -> IssuedToken:
    """Create an API token for `user`. Pass `key` to register a known key (the demo token)."""
    key = key or "pt_" + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(user=user, name=name, key_hash=token_hash(key), prefix=key[:8])
    return IssuedToken(token=token, key=key)


def _sockets_end_on_commit(*, group: str, reason: str) -> None:
    # robust: the change is committed whatever the channel layer does; a socket that missed the
    # event still fails its next frame (apps.accounts.selectors.access_ended_reason).
    transaction.on_commit(lambda: sockets.sockets_end(group=group, reason=reason), robust=True)


def token_revoke(*, token: ApiToken) -> None:
    """Revoke a token; the sockets authenticated with it end as soon as the revocation is committed."""
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        _sockets_end_on_commit(group=sockets.token_group(token.pk), reason=sockets.TOKEN_REVOKED)


def user_deactivate(*, user: User) -> None:
    """Deactivate a user: no more logins or API tokens, and their open sockets end once it is committed."""
    User.objects.filter(pk=user.pk).update(is_active=False)
    user.is_active = False
    _sockets_end_on_commit(group=sockets.user_group(user.pk), reason=sockets.USER_DEACTIVATED)


def login_session_end(*, session_key: str | None) -> None:
    """A browser session logged out: the sockets it authenticated (by cookie) end."""
    if session_key:
        _sockets_end_on_commit(group=sockets.login_group(session_key), reason=sockets.LOGGED_OUT)


def token_authenticate(*, key: str) -> ApiToken | None:
    """The live token for `key` with its user, or None. Records when it was last used."""
    if not key or not isinstance(key, str):
        return None
    token = (
        ApiToken.objects.select_related("user")
        .filter(key_hash=token_hash(key), revoked_at__isnull=True, user__is_active=True)
        .first()
    )
    if token is not None:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=timezone.now())
    return token


class SignUpClosed(Exception):
    """Sign-up is closed on this site (SIGNUP_OPEN is false): staff add users."""


def user_sign_up(*, username: str, email: str, password: str) -> User:
    """Create an ordinary account (never staff) for someone signing up on the web app.

    The caller has validated the fields (a unique username, a password the validators accept).
    """
    if not settings.SIGNUP_OPEN:
        raise SignUpClosed()
    return User.objects.create_user(username=username, email=email, password=password)


@transaction.atomic
def demo_user_ensure(*, username: str, password: str, api_token: str) -> User:
    """Create the demo staff user (if missing) and register its API token; safe to run every start.

    The password is set only when the user is created, and only if one is given (else it has none
    until someone sets one): a start never resets a password its owner changed.
    """
    user, created = User.objects.get_or_create(username=username, defaults={"is_staff": True, "is_superuser": True})
    if created:
        if password:
            user.set_password(password)
        else:
            user.set_unusable_password()
        user.save(update_fields=["password"])
    if api_token and not ApiToken.objects.filter(key_hash=token_hash(api_token)).exists():
        token_create(user=user, name="demo", key=api_token)
    return user
