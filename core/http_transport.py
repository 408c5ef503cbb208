"""An httpx transport on aiohttp's connection pool: httpx stays the API, without httpcore's per-request pool scans.

httpcore 1.0.9 rescans every pooled connection (and every queued request) when a request starts and ends
(encode/httpcore#1035), which made the Uppzy calls the bot's largest CPU cost. aiohttp's connector hands out an
idle connection in O(1). The body is read inside the transport (Uppzy answers are small JSON objects), so the
connection goes back to the pool at once and every aiohttp failure surfaces here, mapped to the httpx error that
says whether the request may have reached the server: httpx.ConnectError/ConnectTimeout only when nothing was sent.
"""

from __future__ import annotations

import aiohttp
import httpx
from yarl import URL

__all__ = ["AiohttpTransport"]


class AiohttpTransport(httpx.AsyncBaseTransport):
    """httpx.AsyncBaseTransport over one aiohttp.ClientSession, at most `max_connections` sockets, proxies ignored."""

    def __init__(self, *, max_connections: int = 100, keepalive_expiry: float = 5.0) -> None:
        self.max_connections = max_connections
        self.keepalive_expiry = keepalive_expiry
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        # Created on first use: aiohttp binds its session to the running event loop.
        connector = aiohttp.TCPConnector(limit=self.max_connections, limit_per_host=0,
                                         keepalive_timeout=self.keepalive_expiry)
        self._session = aiohttp.ClientSession(connector=connector, trust_env=False, auto_decompress=False,
                                              cookie_jar=aiohttp.DummyCookieJar())
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send `request`, read the whole answer, and return it as an httpx.Response (httpx decodes it)."""
        session = self._session or self._open()
        timeout = request.extensions.get("timeout") or {}
        url = request.url
        if url.userinfo:  # httpx already turned them into an Authorization header, which aiohttp won't combine
            url = url.copy_with(userinfo=b"")
        try:
            async with session.request(
                request.method, URL(str(url), encoded=True), headers=request.headers.multi_items(),
                data=request.content or None, allow_redirects=False, compress=None,
                timeout=aiohttp.ClientTimeout(connect=timeout.get("pool"), sock_connect=timeout.get("connect"),
                                              sock_read=timeout.get("read")),
            ) as response:
                status, headers, reason = response.status, response.raw_headers, response.reason
                body = await response.read()
        except aiohttp.ClientError as exc:
            raise _mapped(exc) from None  # aiohttp's error may hold request info; its text is kept
        extensions = {"http_version": b"HTTP/1.1"}
        if reason:
            extensions["reason_phrase"] = reason.encode("latin-1", "replace")
        return httpx.Response(status, headers=list(headers), content=body, extensions=extensions)

    async def aclose(self) -> None:
        """Close the pooled connections."""
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()


def _mapped(exc: aiohttp.ClientError) -> httpx.TransportError:
    """The httpx error for an aiohttp failure: Connect* only when the request cannot have been sent."""
    message = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, aiohttp.ConnectionTimeoutError):  # waiting for a pooled socket or for connect()
        return httpx.ConnectTimeout(message)
    if isinstance(exc, aiohttp.ClientConnectorError):  # refused, unreachable, DNS: never reached the server
        return httpx.ConnectError(message)
    if isinstance(exc, aiohttp.SocketTimeoutError | aiohttp.ServerTimeoutError):
        return httpx.ReadTimeout(message)
    if isinstance(exc, aiohttp.InvalidURL):
        return httpx.UnsupportedProtocol(message)
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        return httpx.RemoteProtocolError(message)
    return httpx.ReadError(message)  # reset mid-request and anything else: the server may have acted
