"""The bot's HTTP side on PORT: /healthz, /readyz and /metrics, beside Slack's /slack/events in HTTP mode."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web

from bots.httpguard import ConnectionGuard, install_log_limits
from core.metrics import Metrics

__all__ = ["WebServer"]

log = logging.getLogger(__name__)

ReadyCheck = Callable[[], Awaitable[bool] | bool]


MAX_BODY = 1024 * 1024  # Slack's event and interaction payloads are far smaller


class _GuardedSite(web.TCPSite):
    """aiohttp's TCPSite with each connection wrapped by a ConnectionGuard and an explicit listen backlog."""

    __slots__ = ("_guard",)

    def __init__(self, runner: web.BaseRunner, host: str, port: int, *, guard: ConnectionGuard,
                 backlog: int) -> None:
        super().__init__(runner, host, port, backlog=backlog)
        self._guard = guard

    async def start(self) -> None:
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        self._server = await asyncio.get_running_loop().create_server(
            self._guard.factory(server), self._host, self._port, backlog=self._backlog, reuse_address=True)
        self._bound_port = self._server.sockets[0].getsockname()[1]


class WebServer:
    """One aiohttp server: liveness, readiness per dependency, Prometheus metrics, and any extra routes.

    Hardened for the open internet (Slack HTTP mode): at most `max_connections` at once, request headers due
    within `header_timeout` of the connect (or of the previous response), a body within `body_timeout`, idle
    keep-alive connections closed after `header_timeout`, and per-request log lines rate-limited.
    """

    def __init__(self, *, metrics: Metrics, checks: dict[str, ReadyCheck] | None = None,
                 routes: Iterable[web.RouteDef] = (), max_connections: int = 256, header_timeout: float = 10.0,
                 body_timeout: float = 10.0, backlog: int = 128) -> None:
        self.metrics = metrics
        self.checks = dict(checks or {})
        self.guard = ConnectionGuard(max_connections=max_connections, header_timeout=header_timeout)
        self.body_timeout = body_timeout
        self.backlog = backlog
        self.app = web.Application(client_max_size=MAX_BODY, middlewares=[self._deadlines],
                                   handler_args={"max_line_size": 8190, "max_field_size": 8190,
                                                 "keepalive_timeout": header_timeout, "lingering_time": 2.0})
        self.app.router.add_get("/healthz", self._healthz)
        self.app.router.add_get("/readyz", self._readyz)
        self.app.router.add_get("/metrics", self._metrics)
        self.app.add_routes(list(routes))
        self._runner: web.AppRunner | None = None
        self.port = 0

    @web.middleware
    async def _deadlines(self, request: web.Request,
                         handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        """Headers are in: no header deadline while handled; the body (if any) must arrive within body_timeout."""
        self.guard.headers_received(request.transport)
        try:
            if request.body_exists:
                try:
                    async with asyncio.timeout(self.body_timeout):
                        await request.read()  # cached: handlers' read()/text()/json() reuse it
                except TimeoutError:
                    log.info("http: %s %s: request body not received within %.0fs", request.method,
                             request.path[:100], self.body_timeout)
                    response = web.Response(status=408, text="request body not received in time")
                    response.force_close()
                    return response
            return await handler(request)
        finally:
            self.guard.request_done(request.transport)

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _readyz(self, request: web.Request) -> web.Response:
        results: dict[str, bool] = {}
        for name, check in self.checks.items():
            try:
                outcome = check()
                results[name] = bool(await outcome if isinstance(outcome, Awaitable) else outcome)
            except Exception:
                results[name] = False
        ready = all(results.values())
        return web.Response(status=200 if ready else 503, content_type="application/json",
                            text=json.dumps({"ready": ready, "checks": results}))

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=self.metrics.render(), headers={"Content-Type": "text/plain; version=0.0.4"})

    async def start(self, host: str, port: int) -> int:
        """Listen on host:port (0 = any free port); returns the port."""
        install_log_limits()
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
        await self._runner.setup()
        site = _GuardedSite(self._runner, host, port, guard=self.guard, backlog=self.backlog)
        try:
            await site.start()
        except BaseException:
            await self._runner.cleanup()
            self._runner = None
            raise
        self.port = site.port
        log.info("http listening on %s:%d (/healthz /readyz /metrics)", host, self.port)
        return self.port

    async def stop(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
