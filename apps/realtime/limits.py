"""Quotas on the socket: caps on open sockets (per client address, per user), the deadline to
authenticate, and the per-user rates of turns and memory searches.

Mixed into the consumer, which calls these at a few points; the counting is apps.accounts.quotas.
"""

import asyncio
import logging
import uuid
import weakref

from asgiref.sync import sync_to_async
from django.conf import settings

from apps.accounts import quotas
from apps.realtime import protocol as p
from apps.realtime.state import ClientError

log = logging.getLogger(__name__)

REFUSED = {
    "turn": "Too many turns in a short time; wait before the next one.",
    "memory_search": "Too many memory searches in a short time; wait before the next one.",
    "user": "Too many open sockets for this account; close one first.",
    "address": "Too many open sockets from this address; close one first.",
}


def _off_loop(fn):
    """The cache is Redis in the scaled mode: keep its round trips off the event loop."""
    return sync_to_async(fn, thread_sensitive=False)


class _SlotKeeper:
    """The open-socket slots of this process's sockets, refreshed together: one trip off the event loop
    (one Redis pipeline) every third of QUOTA_SOCKET_TTL_S, where each socket had a timer and a trip per
    slot (500 sockets hold 1,000 slots: 50 trips a second)."""

    def __init__(self) -> None:
        self.slots: set[quotas.SocketSlot] = set()
        self.task: asyncio.Task | None = None

    def add(self, slot: quotas.SocketSlot) -> None:
        self.slots.add(slot)
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._keep())

    async def _keep(self) -> None:
        while self.slots:
            await asyncio.sleep(settings.QUOTA_SOCKET_TTL_S / 3)
            try:
                await _off_loop(quotas.socket_slots_refresh)(slots=list(self.slots), still_held=self.slots.__contains__)
            except Exception:  # the cache is down: the sockets work on, their slots may lapse
                log.warning("could not refresh %d socket slots", len(self.slots), exc_info=True)


_keepers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _SlotKeeper] = weakref.WeakKeyDictionary()


def _slot_keeper() -> _SlotKeeper:
    """This event loop's keeper (one per process under Daphne; tests run several loops)."""
    return _keepers.setdefault(asyncio.get_running_loop(), _SlotKeeper())


class QuotaMixin:
    quota_slots: dict[str, quotas.SocketSlot] | None = None  # kind → the slot this socket holds
    quota_tasks: tuple[asyncio.Task, ...] = ()

    async def quota_open(self) -> None:
        """On a new socket: take a slot under its address's cap (else refuse it: `rate_limited`, then
        close 4029) and start the deadline to authenticate."""
        self.quota_slots, self.quota_holder = {}, uuid.uuid4().hex
        address = (self.scope.get("client") or [None])[0]  # Daphne --proxy-headers puts the real one here
        if address:
            try:
                await self.quota_slot("address", address)
            except ClientError as exc:
                await self.send_frame(p.Error(code=exc.code, message=exc.message, retry_after=exc.retry_after))
                await self.close(code=exc.close_code)
                return
        if settings.WS_AUTH_TIMEOUT_S > 0:
            self.quota_tasks = (asyncio.create_task(self._quota_auth_deadline()),)

    async def quota_slot(self, kind: str, owner: object) -> None:
        """Hold one of `owner`'s open-socket slots while this socket lives; ClientError (closing) if none is free."""
        old = self.quota_slots.pop(kind, None)
        if old is not None:
            _slot_keeper().slots.discard(old)
            await _off_loop(quotas.socket_slot_release)(slot=old)
        try:
            slot = await _off_loop(quotas.socket_slot_claim)(kind=kind, owner=owner, holder=self.quota_holder)
        except quotas.QuotaExceeded as exc:
            raise ClientError(
                p.ErrorCode.RATE_LIMITED, REFUSED[kind], p.CloseCode.RATE_LIMITED, retry_after=exc.retry_after
            ) from None
        if slot is not None:
            self.quota_slots[kind] = slot
            _slot_keeper().add(slot)

    async def quota_take(self, kind: str) -> None:
        """Count one `kind` ("turn", "memory_search") for the user; ClientError `rate_limited` when over."""
        retry_after = await _off_loop(quotas.quota_take)(user_id=self.user.pk, kind=kind)
        if retry_after is not None:
            raise ClientError(p.ErrorCode.RATE_LIMITED, REFUSED[kind], retry_after=retry_after)

    async def quota_close(self) -> None:
        """On disconnect: free the slots, stop the timers."""
        for task in self.quota_tasks:
            task.cancel()
        slots, self.quota_slots = self.quota_slots or {}, {}
        for slot in slots.values():
            _slot_keeper().slots.discard(slot)
            await _off_loop(quotas.socket_slot_release)(slot=slot)

    async def _quota_auth_deadline(self) -> None:
        await asyncio.sleep(settings.WS_AUTH_TIMEOUT_S)
        if self.conversation is None:
            await self.send_frame(p.Disconnected(reason="auth_timeout"))
            await self.close(code=p.CloseCode.AUTH_TIMEOUT)
