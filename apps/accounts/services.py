import hashlib
import secrets
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

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


def token_revoke(*, token: ApiToken) -> None:
    """Revoke a token; sockets authenticated with it keep their session until they reconnect."""
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])


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
