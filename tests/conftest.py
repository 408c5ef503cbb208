"""Shared fixtures: a clean environment for every test, an in-process Uppzy simulator and a client wired to it.

Reusable by any test module:

- ``sim``: a started :class:`simulator.Simulator` on 127.0.0.1 (answers at once, seed 1), stopped afterwards.
- ``uppzy``: an :class:`core.uppzy.UppzyClient` pointed at ``sim`` over real loopback HTTP, no retry waits.
- ``make_sim`` / ``make_uppzy``: factories for a simulator with other knobs or a client with other settings;
  everything they build is stopped/closed after the test.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from core.config import Secret
from core.retry import RetryPolicy
from core.uppzy import UppzyClient
from core.uppzy_types import Timeouts
from simulator import Simulator, SimulatorConfig

# Support modules hold shared fixtures and asserts (tests/slack and tests/discord load theirs in conftest.py).
pytest.register_assert_rewrite("tests.slack_support", "tests.discord_support", "tests.relay_support")

SIM_KEY = "sim-key"
SITE_ID = "demo-site"
TENANT_ID = "demo-tenant"
FAST_TIMEOUTS = Timeouts(connect=1, default=2, chat=3)

_ENV_PREFIXES = ("UPPZY_", "SLACK_", "DISCORD_", "SESSION_", "LOG_")
_ENV_NAMES = frozenset({"DATABASE_URL", "PORT", "SECRETS_KEY", "METRICS_WORKSPACE_LABELS", "HTTP_PROXY",
                        "HTTPS_PROXY", "http_proxy", "https_proxy"})


@pytest.fixture(autouse=True)
def _clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove every setting the bot reads (and proxies) so the developer's shell never leaks into a test."""
    for name in list(os.environ):
        if name.startswith(_ENV_PREFIXES) or name in _ENV_NAMES:
            monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def make_sim() -> AsyncIterator[Callable[..., Awaitable[Simulator]]]:
    """Factory: ``await make_sim(error_rate=1.0)`` starts a simulator with those SimulatorConfig fields."""
    started: list[Simulator] = []

    async def factory(**config: Any) -> Simulator:
        config.setdefault("latency", (0.0, 0.0))
        config.setdefault("seed", 1)
        simulator = Simulator(SimulatorConfig(**config))
        await simulator.start()
        started.append(simulator)
        return simulator

    yield factory
    for simulator in started:
        await simulator.stop()


@pytest.fixture
async def sim(make_sim: Callable[..., Awaitable[Simulator]]) -> Simulator:
    """A started simulator with instant answers (latency 0) and seed 1."""
    return await make_sim()


@pytest.fixture
async def make_uppzy(sim: Simulator) -> AsyncIterator[Callable[..., UppzyClient]]:
    """Factory: ``make_uppzy(api_key=Secret("x"))`` builds a client like ``uppzy`` with those arguments changed."""
    clients: list[UppzyClient] = []

    def factory(**overrides: Any) -> UppzyClient:
        kwargs: dict[str, Any] = {
            "base_url": sim.base_url, "api_key": Secret(SIM_KEY), "site_id": SITE_ID, "tenant_id": TENANT_ID,
            "retry": RetryPolicy.no_wait(), "timeouts": FAST_TIMEOUTS,
        }
        kwargs.update(overrides)
        client = UppzyClient(**kwargs)
        clients.append(client)
        return client

    yield factory
    for client in clients:
        await client.aclose()


@pytest.fixture
def uppzy(make_uppzy: Callable[..., UppzyClient]) -> UppzyClient:
    """An UppzyClient talking to ``sim`` over loopback HTTP: key sim-key, demo-site, demo-tenant, no retry waits."""
    return make_uppzy()


from tests.relay_support import harness  # noqa: E402, F401 (the relay harness fixture, for every test module)


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    """A fresh, empty PostgreSQL database for one test (skips where PostgreSQL is unavailable, fails under CI)."""
    from tests.pg_support import pg_server

    server = pg_server()
    url = await server.create_database()
    yield url
    await server.drop_database(url)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """One visible line when PostgreSQL tests were skipped for want of a server, saying how to enable them."""
    from tests import pg_support

    reason = pg_support.unavailable_reason()
    if reason:
        terminalreporter.write_line(f"PostgreSQL tests skipped ({reason}): {pg_support.ENABLE_HINT}")
