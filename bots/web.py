"""The bot's HTTP side on PORT: /healthz, /readyz and /metrics, beside Slack's /slack/events in HTTP mode."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web

from core.metrics import Metrics

__all__ = ["WebServer"]

log = logging.getLogger(__name__)

ReadyCheck = Callable[[], Awaitable[bool] | bool]


class WebServer:
    """One aiohttp server: liveness, readiness per dependency, Prometheus metrics, and any extra routes."""

    def __init__(self, *, metrics: Metrics, checks: dict[str, ReadyCheck] | None = None,
                 routes: Iterable[web.RouteDef] = ()) -> None:
        self.metrics = metrics
        self.checks = dict(checks or {})
        self.app = web.Application(client_max_size=1024 * 1024)
        self.app.router.add_get("/healthz", self._healthz)
        self.app.router.add_get("/readyz", self._readyz)
        self.app.router.add_get("/metrics", self._metrics)
        self.app.add_routes(list(routes))
        self._runner: web.AppRunner | None = None
        self.port = 0

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
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        log.info("http listening on %s:%d (/healthz /readyz /metrics)", host, self.port)
        return self.port

    async def stop(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
