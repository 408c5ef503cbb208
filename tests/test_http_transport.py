"""The Uppzy client's HTTP path (issue 14): aiohttp's pool under the httpx API, errors mapped by what may have
reached Uppzy, the connection cap kept, and status polls with retry=False outside the retry wrapper."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import httpcore
import pytest

from core import backoff
from core.config import Secret
from core.errors import UppzyUnavailable
from core.retry import RetryPolicy
from core.uppzy import UppzyClient
from simulator import Simulator
from tests.conftest import FAST_TIMEOUTS, SIM_KEY, SITE_ID

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
OK = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s'


class RawServer:
    """A loopback HTTP/1.1 server written by hand: counts connections and requests, answers as `handler` says."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[bytes] = []
        self.open = 0
        self.peak = 0
        self.server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open += 1
        self.peak = max(self.peak, self.open)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                self.requests.append(head + await reader.readexactly(length))
                await self.handler(reader, writer)
                if writer.is_closing():
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            self.open -= 1
            writer.close()

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/api/v1"


def answer(body: bytes = b'{"request_id": "r1", "session_id": "s1", "status": "pending"}',
           extra: bytes = b"", delay: float = 0.0) -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if delay:
            await asyncio.sleep(delay)
        writer.write(OK % (len(body), extra, body))
        await writer.drain()
    return handler


async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.transport.abort()  # the request arrived; the connection dies before any answer


@pytest.fixture
async def raw() -> AsyncIterator[Callable[[Handler], Awaitable[tuple[RawServer, str]]]]:
    servers: list[RawServer] = []

    async def factory(handler: Handler) -> tuple[RawServer, str]:
        server = RawServer(handler)
        servers.append(server)
        return server, await server.start()

    yield factory
    for server in servers:
        assert server.server is not None
        server.server.close()


def client_for(base_url: str, **kwargs: object) -> UppzyClient:
    return UppzyClient(base_url=base_url, api_key=Secret(SIM_KEY), site_id=SITE_ID, retry=RetryPolicy.no_wait(),
                       timeouts=FAST_TIMEOUTS, **kwargs)  # type: ignore[arg-type]


async def test_calls_do_not_go_through_httpcore(uppzy: UppzyClient, sim: Simulator,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """httpcore's pool (rescanned on every request start and end) is no longer on the path to Uppzy."""
    async def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("httpcore's connection pool was used")

    monkeypatch.setattr(httpcore.AsyncConnectionPool, "handle_async_request", refuse)
    submitted = await uppzy.submit("s-1", "hello")
    sim.complete_now()
    assert (await uppzy.status(submitted.request_id, retry=False)).done
    assert await uppzy.site()


async def test_status_without_retry_skips_the_retry_wrapper(uppzy: UppzyClient, sim: Simulator,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A poll the scheduler re-schedules itself costs no stamina context; other calls still use it."""
    submitted = await uppzy.submit("s-1", "hello")
    entered: list[object] = []
    real = backoff.stamina.retry_context
    monkeypatch.setattr(backoff.stamina, "retry_context", lambda **kw: entered.append(kw) or real(**kw))
    await uppzy.status(submitted.request_id, retry=False)
    assert entered == []
    await uppzy.status(submitted.request_id)
    assert len(entered) == 1


async def test_hang_up_after_the_request_is_maybe_processed_and_submit_is_not_resent(raw) -> None:  # type: ignore[no-untyped-def]
    """A connection dropped after the submit was sent may have created a turn: one attempt, maybe_processed."""
    server, base = await raw(hang_up)
    async with client_for(base) as client:
        with pytest.raises(UppzyUnavailable) as info:
            await client.submit("s-1", "hello")
    assert info.value.maybe_processed
    assert len(server.requests) == 1


async def test_hang_up_on_a_read_is_retried(raw) -> None:  # type: ignore[no-untyped-def]
    calls = 0

    async def first_hangs_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal calls
        calls += 1
        await (hang_up(reader, writer) if calls == 1 else answer(b'{"id": "demo-site"}')(reader, writer))

    server, base = await raw(first_hangs_up)
    async with client_for(base) as client:
        assert (await client.site())["id"] == "demo-site"
    assert len(server.requests) == 2


async def test_connection_cap_holds(raw) -> None:  # type: ignore[no-untyped-def]
    """max_connections bounds the sockets opened to Uppzy however many calls are in flight."""
    server, base = await raw(answer(delay=0.05))
    async with client_for(base, max_connections=2) as client:
        results = await asyncio.gather(*(client.status(f"r{i}", retry=False) for i in range(8)))
    assert len(results) == 8 and len(server.requests) == 8
    assert server.peak == 2


async def test_cookies_are_neither_kept_nor_sent(raw) -> None:  # type: ignore[no-untyped-def]
    """Uppzy authenticates by key only; a Set-Cookie (a proxy's, say) is not replayed on later calls."""
    server, base = await raw(answer(extra=b"Set-Cookie: lb=abc; Path=/\r\n"))
    async with client_for(base) as client:
        await client.status("r1", retry=False)
        await client.status("r1", retry=False)
    assert len(server.requests) == 2
    assert b"cookie" not in server.requests[1].lower()
    assert all(SIM_KEY.encode() in request for request in server.requests)


async def test_credentials_in_the_base_url_become_basic_auth(raw) -> None:  # type: ignore[no-untyped-def]
    """As with httpx's own transport: user:password in UPPZY_BASE_URL is sent as an Authorization header."""
    server, base = await raw(answer())
    async with client_for(base.replace("http://", "http://user:pw@")) as client:
        await client.status("r1", retry=False)
    assert b"authorization: basic dxnlcjpwdw==" in server.requests[0].lower()


async def test_a_closed_client_refuses_calls_instead_of_opening_a_new_pool(raw) -> None:  # type: ignore[no-untyped-def]
    """Calls go straight to the transport (not through httpx's send): one made after aclose() must still fail as
    httpx's would, not quietly open a fresh connection pool that nobody closes."""
    server, base = await raw(answer())
    client = client_for(base)
    await client.status("r1", retry=False)
    await client.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await client.status("r1", retry=False)
    assert len(server.requests) == 1
