"""Site ids are validated as what they become: one segment of the Uppzy URL path (issue 10, item 13)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from core.config import ConfigError, Secret, load_settings
from core.setting_parsers import SettingError, parse_site_id
from core.sqlite_store import SqliteStore
from core.uppzy import UppzyClient
from core.workspace import WorkspaceSettingsService
from simulator import Simulator
from tests.conftest import SIM_KEY


@pytest.mark.parametrize("raw", ["..", ".", " .. ", "../demo-site", "a/b", "a\\b", "a b", "a\tb", "a\u200bb", "%2e%2e"])
async def test_a_site_id_that_is_not_one_path_segment_is_refused_both_ways(raw: str, tmp_path: Path) -> None:
    """UPPZY_SITE_ID at start and the per-workspace `site_id` refuse it alike, with one line."""
    with pytest.raises(ConfigError) as env:
        load_settings({"UPPZY_SITE_ID": raw})
    assert "UPPZY_SITE_ID" in str(env.value) and "\n" not in str(env.value)
    store = await SqliteStore.open(str(tmp_path / "ws.db"))
    try:
        workspaces = WorkspaceSettingsService(store, load_settings({"UPPZY_SITE_ID": "demo-site"}))
        with pytest.raises(SettingError):
            await workspaces.set("slack", "T1", "site_id", raw, by="U9")
        assert (await workspaces.get("slack", "T1")).site_id == "demo-site"
    finally:
        await store.close()


@pytest.mark.parametrize("odd", ["...", ".well-known", "a..b", "a:b", "x_-.:9"])
async def test_an_accepted_odd_site_id_reaches_uppzy_as_one_path_segment(
        odd: str, make_sim: Callable[..., Awaitable[Simulator]]) -> None:
    """Whatever parse_site_id accepts is quoted into the URL and arrives as exactly that site."""
    assert parse_site_id(odd) == odd
    sim = await make_sim(sites=(odd,))
    client = UppzyClient(base_url=sim.base_url, api_key=Secret(SIM_KEY), site_id=odd)
    try:
        assert (await client.site())["id"] == odd
        await client.submit("slack-user-U1-C1", "how do returns work?")
    finally:
        await client.aclose()
    [site, chat] = sim.requests
    assert (site.endpoint, site.status) == ("site", 200) and site.path.endswith(f"/sites/{odd}")
    assert chat.endpoint == "chat_async" and chat.status < 300 and chat.path.endswith(f"/sites/{odd}/chat/async")
