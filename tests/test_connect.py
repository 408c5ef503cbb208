"""core.connect.Connector against the simulator and a real SQLite store: the outcomes an admin sees, and the key
never in a log line (DEBUG included), in a result, or in the database file in clear."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from bots.runner import build_connector
from core.config import Secret, Settings
from core.connect import Connector
from core.secrets_box import SecretBox
from core.sqlite_store import SqliteStore
from simulator import Simulator

KEY_B = "sk-live-eeee-0a1b2c3d4e"


@pytest.fixture
async def sim(make_sim: Callable[..., Any]) -> Simulator:
    """A second key bound to site-b."""
    return await make_sim(keys={KEY_B: ("site-b",)})


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    """A SQLite store in tmp_path."""
    opened = await SqliteStore.open(str(tmp_path / "bot.db"))
    yield opened
    await opened.close()


def _files(tmp_path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())


def _connector(sim: Simulator, store: SqliteStore, changes: list[tuple[str, str]], key: str | None = "new"
               ) -> tuple[Connector, SecretBox | None]:
    secrets_key = Fernet.generate_key().decode() if key else None
    settings = Settings(uppzy_base_url=sim.base_url, secrets_key=Secret(secrets_key) if secrets_key else None)
    connector = build_connector(settings, store, on_change=lambda p, w: changes.append((p, w)))
    assert isinstance(connector, Connector)
    return connector, SecretBox([secrets_key]) if secrets_key else None


async def test_outcomes_and_the_key_never_logged(sim: Simulator, store: SqliteStore, tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    """ok saves sealed and tells on_change; 401, 404, blanks and odd input are one line each, nothing saved."""
    caplog.set_level(logging.DEBUG)
    changes: list[tuple[str, str]] = []
    connector, box = _connector(sim, store, changes)
    assert box is not None
    bad = await connector.connect("slack", "T1", "site-b", "sk-nope-7777-abcdef")
    assert (bad.ok, bad.field) == (False, "api_key") and "401" in bad.message
    other = await connector.connect("slack", "T1", "demo-site", KEY_B)
    assert (other.ok, other.field) == (False, "site") and "cannot use site demo-site (404)" in other.message
    assert (await connector.connect("slack", "T1", "", KEY_B)).field == "site"
    assert (await connector.connect("slack", "T1", "site b", KEY_B)).field == "site"
    assert (await connector.connect("slack", "T1", "site-b", "  ")).field == "api_key"
    assert (await connector.connect("slack", "T1", "site-b", "two\nlines")).field == "api_key"
    assert await store.get_credentials("slack", "T1") is None and changes == []

    good = await connector.connect("slack", "T1", "site-b", f"  {KEY_B}\n")
    assert good.ok and good.site_id == "site-b" and KEY_B not in good.message
    stored = await store.get_credentials("slack", "T1")
    assert stored is not None and box.open(stored[1]) == KEY_B
    assert changes == [("slack", "T1")] and await connector.connected_site("slack", "T1") == "site-b"
    for secret in (KEY_B, "sk-nope-7777-abcdef"):
        assert all(secret not in r.getMessage() for r in caplog.records)
        assert secret.encode() not in _files(tmp_path)

    await connector.forget("slack", "T1")
    assert await connector.connected_site("slack", "T1") is None and changes[-1] == ("slack", "T1")


async def test_without_a_box_the_admin_is_told_to_set_secrets_key(sim: Simulator, store: SqliteStore) -> None:
    """No SECRETS_KEY: nothing is checked or stored; the line names SECRETS_KEY."""
    connector, _ = _connector(sim, store, [], key=None)
    result = await connector.connect("slack", "T1", "site-b", KEY_B)
    assert not result.ok and "SECRETS_KEY" in result.message and sim.calls("site") == []


async def test_a_failing_check_or_store_never_carries_the_key(store: SqliteStore,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    """An exception whose text holds the key (a check, the store) is reported by meaning only; a slow check ends
    within the timeout as 'could not be reached'."""
    caplog.set_level(logging.DEBUG)
    box = SecretBox([Fernet.generate_key().decode()])

    async def leaky(site: str, key: Secret) -> None:
        raise ValueError(f"bad header {key.reveal()}")

    async def slow(site: str, key: Secret) -> None:
        await asyncio.sleep(10)

    result = await Connector(store, box, leaky, lambda p, w: None).connect("discord", "1", "site-b", KEY_B)
    assert not result.ok and KEY_B not in result.message
    slow_result = await Connector(store, box, slow, lambda p, w: None, check_timeout=0.05).connect(
        "discord", "1", "site-b", KEY_B)
    assert "could not be reached" in slow_result.message

    async def fine(site: str, key: Secret) -> None:
        return None

    class Broken:
        async def set_credentials(self, *args: Any, **kwargs: Any) -> None:
            raise RuntimeError(f"disk full while writing {kwargs.get('sealed_key')} {KEY_B}")

    failed = await Connector(Broken(), box, fine, lambda p, w: None).connect(  # type: ignore[arg-type]
        "discord", "1", "site-b", KEY_B)
    assert not failed.ok and "could not be saved" in failed.message and KEY_B not in failed.message
    assert all(KEY_B not in r.getMessage() for r in caplog.records)
