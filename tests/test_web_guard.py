"""The HTTP server on PORT against slow and hostile clients: stalled half-requests, a stalled body, a flood of
malformed requests. All loopback, all bounded."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from bots.web import WebServer
from core.metrics import Metrics

STALLED = 300
CAP = 100


async def _echo(request: web.Request) -> web.Response:
    return web.Response(text=str(len(await request.read())))


@pytest.fixture
async def server() -> AsyncIterator[WebServer]:
    """A WebServer capped at 100 connections with a 1 s header deadline and a 0.5 s body deadline."""
    srv = WebServer(metrics=Metrics(), routes=[web.post("/echo", _echo)], max_connections=CAP, header_timeout=1.0,
                    body_timeout=0.5)
    await srv.start("127.0.0.1", 0)
    try:
        yield srv
    finally:
        await srv.stop()


async def _get(port: int, path: str) -> tuple[int, float]:
    started = time.monotonic()
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}{path}") as res:
        await res.read()
        return res.status, time.monotonic() - started


async def _closed(reader: asyncio.StreamReader) -> bool:
    """Wait until the server closes this connection (EOF or reset)."""
    try:
        while await reader.read(1024):
            pass
    except (ConnectionResetError, BrokenPipeError):
        pass
    return True


def _log_bytes(records: list[logging.LogRecord]) -> int:
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    return sum(len(formatter.format(r)) + 1 for r in records)


async def test_stalled_half_requests_neither_block_health_nor_stay_open(server: WebServer,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    """Injected: 300 connections that send half a request header and stall (cap 100); asserted: /healthz answers
    at once, at most ~100 are held open, every stalled one is closed after the 1 s header deadline, and the log
    stays under 8 KB."""
    caplog.set_level(logging.INFO)
    conns = []
    for _ in range(STALLED):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"POST /slack/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le")
        conns.append((reader, writer))
    await asyncio.sleep(0)  # let the server accept what is queued
    status, took = await _get(server.port, "/healthz")
    assert status == 200 and took < 0.5, took
    assert server.guard.open <= CAP + 1
    try:
        async with asyncio.timeout(5):
            await asyncio.gather(*(_closed(reader) for reader, _ in conns))
    finally:
        for _, writer in conns:
            writer.close()
    assert server.guard.evicted + server.guard.refused >= STALLED - CAP
    assert server.guard.timed_out >= 1
    assert server.guard.open == 0
    assert _log_bytes(caplog.records) < 8192, len(caplog.records)


async def test_a_stalled_body_gets_408_and_the_connection_is_closed(server: WebServer) -> None:
    """Injected: a POST announcing 100 bytes that sends 10 and stalls; asserted: 408 within the body deadline."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
        async with asyncio.timeout(3):
            status_line = await reader.readline()
            assert b" 408 " in status_line, status_line
            assert await _closed(reader)
    finally:
        writer.close()


async def test_an_idle_keep_alive_connection_is_closed_after_the_header_deadline(server: WebServer) -> None:
    """A client that got its answer and keeps the connection open without another request is closed after 1 s."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        async with asyncio.timeout(3):
            assert b" 200 " in await reader.readline()
            assert await _closed(reader)
    finally:
        writer.close()
    assert server.guard.open == 0


async def test_a_flood_of_malformed_requests_logs_a_bounded_number_of_short_lines(
        server: WebServer, caplog: pytest.LogCaptureFixture) -> None:
    """Injected: 200 requests with a malformed header; asserted: each gets 400, and the whole flood logs at most
    ~20 lines of one line each (no tracebacks)."""
    caplog.set_level(logging.DEBUG, logger="aiohttp")
    caplog.set_level(logging.INFO)
    for _ in range(200):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n")
        async with asyncio.timeout(3):
            assert b" 400 " in await reader.readline()
        writer.close()
    assert (await _get(server.port, "/healthz"))[0] == 200
    lines = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert len(lines) <= 25, len(lines)
    assert all("\n" not in r.getMessage() and not r.exc_info for r in lines)
    assert _log_bytes(lines) < 8192
