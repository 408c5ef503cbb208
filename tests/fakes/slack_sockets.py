"""Socket Mode connections of the Slack fake: several sockets at once, one per envelope, redelivery of unacked ones.

Slack lets one app hold up to 10 Socket Mode websockets (every replica of a bot opens its own) and hands each
envelope to one of them. An events_api envelope that is not acked in time, or whose socket goes away before the
ack, is sent again with a new envelope_id, the same event_id and ``retry_attempt`` + 1, up to 3 retries. This module
keeps that bookkeeping for :class:`tests.fakes.slack_fake.FakeSlack`, so tests can say which socket got what.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import WSCloseCode, web

__all__ = [
    "CLOSED_REASON",
    "DISTRIBUTIONS",
    "MAX_CONNECTIONS",
    "TIMEOUT_REASON",
    "TOO_MANY_WEBSOCKETS",
    "Delivery",
    "SocketConn",
    "SocketHub",
]

MAX_CONNECTIONS = 10  # Slack's limit of concurrent Socket Mode websockets per app
MAX_RETRIES = 3  # Slack retries an unacknowledged event 3 times after the first delivery
TIMEOUT_REASON = "timeout"  # retry_reason of a redelivery after the ack deadline passed
CLOSED_REASON = "connection_closed"  # retry_reason of a redelivery because the socket closed before the ack
TOO_MANY_WEBSOCKETS = "too_many_websockets"  # disconnect reason Slack sends to an 11th concurrent socket
DISTRIBUTIONS = ("newest", "random")


@dataclass
class SocketConn:
    """One accepted websocket; ``id`` is its connection number (1, 2, ... in order of connection)."""

    id: int
    ws: web.WebSocketResponse
    ticket: str
    peer: Any  # (host, port) of the client, to tell processes apart if a test needs to
    transport: Any  # the TCP transport, so a test can cut the connection without a close frame
    opened_at: float
    closed_at: float | None = None

    @property
    def open(self) -> bool:
        """True until the socket closed from either side."""
        return self.closed_at is None and not self.ws.closed


@dataclass
class Delivery:
    """One envelope sent on one socket, so tests can assert who got what, when, and on which attempt."""

    envelope_id: str
    kind: str
    event_id: str | None
    socket: int
    at: float
    attempt: int = 0
    reason: str = ""  # "" on the first delivery, else why it was sent again


class SocketHub:
    """Open sockets, the choice of socket per envelope, and the redelivery of unacked events_api envelopes."""

    def __init__(
        self,
        *,
        distribution: str,
        seed: int | None,
        redeliver_after: float | None,
        max_retries: int,
        notify: Callable[[], None],
        is_acked: Callable[[str], bool],
        register: Callable[[dict[str, Any]], None],
    ) -> None:
        if distribution not in DISTRIBUTIONS:
            raise ValueError(f"distribution must be one of {DISTRIBUTIONS}, not {distribution!r}")
        if redeliver_after is not None and redeliver_after <= 0:
            raise ValueError("redeliver_after must be positive seconds, or None to turn redelivery off")
        self.distribution = distribution
        self.redeliver_after = redeliver_after
        self.max_retries = max_retries
        self.connections: dict[int, SocketConn] = {}
        self.deliveries: list[Delivery] = []
        self.refused: list[float] = []  # when an 11th concurrent socket was turned away
        self.given_up: list[Delivery] = []  # last deliveries of events Slack stopped retrying
        self._rng = random.Random(seed)
        self._notify = notify
        self._is_acked = is_acked
        self._register = register
        self._pending: dict[str, asyncio.Event] = {}  # envelope_id -> set on ack or socket close
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False

    # ------------------------------------------------------------------ connections

    def open_sockets(self) -> list[SocketConn]:
        """Open sockets, oldest first."""
        return [c for c in self.connections.values() if c.open]

    def accept(self, ws: web.WebSocketResponse, ticket: str, peer: Any, transport: Any) -> SocketConn | None:
        """Register a prepared websocket, or return None when 10 are already open (the caller refuses it)."""
        if len(self.open_sockets()) >= MAX_CONNECTIONS:
            self.refused.append(time.monotonic())
            self._notify()
            return None
        conn = SocketConn(len(self.connections) + 1, ws, ticket, peer, transport, time.monotonic())
        self.connections[conn.id] = conn
        self._notify()
        return conn

    def closed(self, conn: SocketConn) -> None:
        """Note a closed socket and wake the watchers of its unacked envelopes, which send them elsewhere."""
        conn.closed_at = conn.closed_at or time.monotonic()
        for delivery in self.deliveries:
            if delivery.socket == conn.id and delivery.envelope_id in self._pending:
                self._pending[delivery.envelope_id].set()
        self._notify()

    def acked(self, envelope_id: str) -> None:
        """An ack arrived: stop watching that envelope."""
        event = self._pending.get(envelope_id)
        if event is not None:
            event.set()

    async def close(self, conn: SocketConn, *, abort: bool = False) -> None:
        """Close one socket from the server side; ``abort`` drops the TCP connection without a close frame."""
        if abort:
            if conn.transport is not None:
                conn.transport.abort()
            self.closed(conn)
        elif not conn.ws.closed:
            await conn.ws.close(code=WSCloseCode.GOING_AWAY, message=b"fake closing")

    async def stop(self) -> None:
        """Cancel redelivery watchers first, so closing every socket at shutdown redelivers nothing."""
        self._stopping = True
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # ------------------------------------------------------------------ choosing and sending

    def choose(self, *, exclude: int | None = None) -> SocketConn | None:
        """The socket for the next envelope: newest or random among the open ones, avoiding ``exclude`` if it can."""
        candidates = self.open_sockets()
        others = [c for c in candidates if c.id != exclude]
        pool = others or candidates
        if not pool:
            return None
        return pool[-1] if self.distribution == "newest" else self._rng.choice(pool)

    async def send(self, conn: SocketConn, envelope: dict[str, Any], *, attempt: int = 0, reason: str = "") -> None:
        """Send one envelope on ``conn``, record the delivery, and watch events_api ones for an ack."""
        self._register(envelope)
        payload = envelope.get("payload") or {}
        delivery = Delivery(
            envelope_id=envelope["envelope_id"],
            kind=envelope["type"],
            event_id=payload.get("event_id") if isinstance(payload, dict) else None,
            socket=conn.id,
            at=time.monotonic(),
            attempt=attempt,
            reason=reason,
        )
        self.deliveries.append(delivery)
        watch = self.redeliver_after is not None and delivery.kind == "events_api" and not self._stopping
        if watch:
            self._pending[delivery.envelope_id] = asyncio.Event()
            self._spawn(self._watch(delivery, envelope))
        try:
            await conn.ws.send_json(envelope)
        except (ConnectionError, RuntimeError):
            if not watch:
                raise
            self.closed(conn)  # the watcher sends it elsewhere, as Slack would
        self._notify()

    def _spawn(self, coro: Awaitable[None]) -> None:
        """Keep a reference to a watcher task until it ends."""
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _watch(self, delivery: Delivery, envelope: dict[str, Any]) -> None:
        """Wait for the ack; on timeout or a closed socket, send the event again with a new envelope_id."""
        assert self.redeliver_after is not None
        done = self._pending[delivery.envelope_id]
        try:
            await asyncio.wait_for(done.wait(), self.redeliver_after)
            reason = "" if self._is_acked(delivery.envelope_id) else CLOSED_REASON
        except TimeoutError:
            reason = "" if self._is_acked(delivery.envelope_id) else TIMEOUT_REASON
        finally:
            self._pending.pop(delivery.envelope_id, None)
        if not reason or self._stopping:
            return
        if delivery.attempt >= self.max_retries:
            self.given_up.append(delivery)
            self._notify()
            return
        conn = await self._wait_for_socket(exclude=delivery.socket)
        if conn is None:
            self.given_up.append(delivery)
            self._notify()
            return
        again = {
            **envelope,
            "envelope_id": str(uuid.uuid4()),
            "retry_attempt": delivery.attempt + 1,
            "retry_reason": reason,
        }
        await self.send(conn, again, attempt=delivery.attempt + 1, reason=reason)

    async def _wait_for_socket(self, *, exclude: int, timeout: float = 30.0) -> SocketConn | None:
        """A socket other than ``exclude`` when one is open; else the same one; else wait for a reconnect."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self._stopping and loop.time() < deadline:
            conn = self.choose(exclude=exclude)
            if conn is not None:
                return conn
            await asyncio.sleep(0.02)
        return None

    # ------------------------------------------------------------------ queries

    def per_socket(self, kind: str | None = "events_api") -> Counter[int]:
        """Deliveries per connection number (every kind when ``kind`` is None)."""
        return Counter(d.socket for d in self.deliveries if kind is None or d.kind == kind)

    def of_event(self, event_id: str) -> list[Delivery]:
        """Every delivery of one event_id, first delivery first."""
        return [d for d in self.deliveries if d.event_id == event_id]
