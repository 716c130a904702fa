"""The live sockets of a user, an API token or a browser login session, as channel-layer groups.

The socket joins these groups when it authenticates; the services here end them the moment access
is taken away (after the change is committed), and each socket says `disconnected` and closes.
"""

import hashlib
import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

log = logging.getLogger(__name__)

# Why a socket's access ended (its `disconnected.reason`).
TOKEN_REVOKED = "token_revoked"
USER_DEACTIVATED = "user_deactivated"
LOGGED_OUT = "logged_out"

ACCESS_ENDED_EVENT = "access.ended"  # handled by the consumer's `access_ended`


def token_group(token_id) -> str:
    return f"token.{token_id}"


def user_group(user_id) -> str:
    return f"user.{user_id}"


def login_group(session_key: str) -> str:
    # A session key is a credential: the layer (Redis) only ever sees its hash.
    return "login." + hashlib.sha256(session_key.encode()).hexdigest()[:40]


def sockets_end(*, group: str, reason: str) -> None:
    """Tell every socket in `group` that its access ended (from synchronous code)."""
    layer = get_channel_layer()
    if layer is None:
        return
    async_to_sync(layer.group_send)(group, {"type": ACCESS_ENDED_EVENT, "reason": reason})
    log.info("sockets of %s ended: %s", group, reason)
