"""The socket's access: one live socket per API token, and revocation, deactivation and logout
ending it at once (channel-layer groups), with a cheap re-check for changes made around the services."""

import math
import time

from apps.accounts import sockets as access
from apps.accounts.selectors import access_ended_reason
from apps.core.dbasync import db_async
from apps.realtime import protocol as p

# How often a frame re-checks the socket's access in the database (revocation through the services
# also arrives at once as an event): before every turn (in the trip that queues it, for typed ones), at most once a second for other frames
# (a flood of pings is not a flood of queries), every 5 s for audio, which arrives many times a second.
_ACCESS_CHECK_EVERY_S = 1.0
_AUDIO_ACCESS_CHECK_S = 5.0
_AUDIO_FRAMES = frozenset({"audio_stream_chunk", "voice_call_audio_chunk", "agent_audio_chunk", "binary"})
_TURN_FRAMES = frozenset({"audio_message", "audio_stream_end"})
# Frames whose handler re-checks access itself, in the same trip to the database that queues the
# turn (the consumer's `typed_turn`).
_ADMITTED_FRAMES = frozenset({"message", "regenerate"})


class AccessMixin:
    """Mixed into the consumer: the groups it joins on `connect` and what ends it."""

    token_group: str | None = None
    access_groups: list[str]
    token_id: int | None = None
    session_key: str | None = None
    access_checked_at = 0.0
    ended = False  # access ended or replaced: closing, later frames are dropped

    async def claim_token(self, token_id: int) -> None:
        """At most one live socket per token: tell older ones to go, then join the token's group."""
        self.token_group = f"token.{token_id}"
        await self.channel_layer.group_send(self.token_group, {"type": "token.replaced", "by": self.channel_name})
        await self.channel_layer.group_add(self.token_group, self.channel_name)

    async def join_access_groups(self, user, token) -> bool:
        """Join the groups through which revocation, deactivation and logout reach this socket.

        False (the socket is ending) if access was taken away while it authenticated.
        """
        self.token_id = token.pk if token is not None else None
        session = self.scope.get("session") if token is None else None
        self.session_key = session.session_key if session is not None else None
        self.access_groups = [access.user_group(user.pk)]
        if self.session_key:
            self.access_groups.append(access.login_group(self.session_key))
        for group in self.access_groups:
            await self.channel_layer.group_add(group, self.channel_name)
        # Access taken away between authenticating and joining would have missed the groups.
        reason = await db_async(access_ended_reason)(
            user_id=user.pk, token_id=self.token_id, session_key=self.session_key
        )
        self.access_checked_at = time.monotonic()
        if reason is not None:
            await self.end_access(reason)
            return False
        return True

    async def access_still_live(self, *, every_s: float) -> bool:
        """Re-check the socket's access (a deactivation or revocation done outside the services
        sends no event); False, after ending the socket, when it is gone."""
        if self.user is None or time.monotonic() - self.access_checked_at < every_s:
            return True
        reason = await db_async(access_ended_reason)(
            user_id=self.user.pk, token_id=self.token_id, session_key=self.session_key
        )
        self.access_checked_at = time.monotonic()
        if reason is None:
            return True
        await self.end_access(reason)
        return False

    async def access_ended(self, event):
        """The token was revoked, the user deactivated or the login session logged out."""
        await self.end_access(event["reason"])

    async def end_access(self, reason: str) -> None:
        if self.ended:
            return
        self.ended = True
        await self.end_turn(cancel=True, notify=False)
        await self.send_frame(p.Disconnected(reason=reason))
        await self.close(code=p.CloseCode.FOR_REASON[reason])

    async def token_replaced(self, event):
        if event["by"] != self.channel_name and not self.ended:
            self.ended = True
            await self.end_turn(cancel=True, notify=False)
            await self.send_frame(p.Disconnected(reason="new_connection"))
            await self.close(code=p.CloseCode.REPLACED)


def access_check_every(frame_type: str) -> float:
    if frame_type in _ADMITTED_FRAMES:
        return math.inf
    if frame_type in _TURN_FRAMES:
        return 0.0
    return _AUDIO_ACCESS_CHECK_S if frame_type in _AUDIO_FRAMES else _ACCESS_CHECK_EVERY_S
