"""The one table of setting specs: shared parsers, full coverage of both kinds, and one key lookup everywhere."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from core import workspace
from core.config import ConfigError, Settings, load_settings
from core.models import InboundMessage, ReplyTarget
from core.setting_parsers import (
    CHANNEL_MODES,
    HTTP,
    WEBSOCKET,
    SettingError,
    choice,
    emoji_list,
    id_set,
    int_ids,
    parse_bool,
    parse_duration,
    parse_port,
    parse_site_id,
    positive_float,
    positive_int,
    sqlite_path,
    target,
    text,
    url,
)
from core.setting_specs import ENV_SPECS, WORKSPACE_SPECS, env_spec, workspace_spec
from core.sqlite_store import SqliteStore
from core.workspace import SETTING_KEYS, WorkspaceSettings, WorkspaceSettingsService

ROOT = Path(__file__).resolve().parent.parent
SESSION_KEY = "slack-user-U1-C1"


@pytest.mark.parametrize(
    ("parse", "raw", "expected"),
    [
        (parse_duration, "250ms", 0.25), (parse_duration, "45s", 45.0), (parse_duration, "30m", 1800.0),
        (parse_duration, "2h", 7200.0), (parse_duration, "1d", 86400.0), (parse_duration, "90", 90.0),
        (parse_duration, " 10 M ", 600.0), (parse_duration, "1.5s", 1.5),
        *((parse_bool, raw, True) for raw in ("on", "true", "yes", "1", " ON ", "Yes")),
        *((parse_bool, raw, False) for raw in ("off", "false", "no", "0", "False")),
        (choice(CHANNEL_MODES), " ALL ", "all"), (choice(("debug", "info"), upper=True), "Info", "INFO"),
        (positive_int, " 3 ", 3), (positive_float, "2.5", 2.5), (parse_port, "0", 0), (parse_port, "65535", 65535),
        (url(HTTP, trailing_slash=False), " https://x.test/api/ ", "https://x.test/api"),
        (url(HTTP, trailing_slash=True), "http://x.test/api", "http://x.test/api/"),
        (url(WEBSOCKET), "wss://gateway.test/", "wss://gateway.test/"),
        (id_set, " U1, U2;U1 ,", frozenset({"U1", "U2"})), (int_ids, "30, 10;20,10", (30, 10, 20)),
        (sqlite_path, "sqlite:///data/bot.db", "data/bot.db"), (sqlite_path, "sqlite:///:memory:", ":memory:"),
        (parse_site_id, " demo-site ", "demo-site"), (parse_site_id, "a.b:c_1", "a.b:c_1"),
        (parse_site_id, "...", "..."), (parse_site_id, ".hidden", ".hidden"), (parse_site_id, "a..b", "a..b"),
        (emoji_list, ":+1:, thumbsup +1", ("+1", "thumbsup")), (text(5), " hello ", "hello"),
        (target, "None", None), (target, " S123 ", "S123"),
    ],
)
def test_shared_parsers_accept(parse: Callable[[str], Any], raw: str, expected: Any) -> None:
    """Every input either old parser accepted is still accepted, with the same value."""
    assert parse(raw) == pytest.approx(expected) if isinstance(expected, float) else parse(raw) == expected


@pytest.mark.parametrize(
    ("parse", "raw", "names"),
    [
        (parse_duration, "soon", "45s, 30m or 2h"), (parse_duration, "5 minutes", "45s, 30m or 2h"),
        (parse_duration, "1e3", "45s, 30m or 2h"), (parse_duration, "0s", "greater than zero"),
        (parse_bool, "maybe", "on or off"), (parse_bool, "", "true/false"),
        (choice(CHANNEL_MODES), "loud", "one of: mention, all, off"),
        (positive_int, "2.5", "whole number greater than zero"), (positive_int, "0", "whole number greater"),
        (positive_float, "-1", "number greater than zero"), (positive_float, "abc", "number greater than zero"),
        (parse_port, "abc", "port number from 0 to 65535"), (parse_port, "70000", "port number from 0 to 65535"),
        (url(HTTP), "ftp://x", "http:// or https://"), (url(HTTP), "https://", "http:// or https://"),
        (url(WEBSOCKET), "https://gateway.test", "ws:// or wss://"),
        (int_ids, "123,abc", "numeric server ids"),
        (sqlite_path, "postgres://x", "sqlite:///"), (sqlite_path, "sqlite:///", "sqlite:///"),
        (parse_site_id, "a/b", "letters, digits"), (parse_site_id, "x" * 129, "1 to 128"),
        (parse_site_id, "..", "not . or .."), (parse_site_id, ".", "not . or .."),
        (parse_site_id, " .. ", "not . or .."), (parse_site_id, "a\\b", "letters, digits"),
        (parse_site_id, "a b", "letters, digits"), (parse_site_id, "a\tb", "letters, digits"),
        (parse_site_id, "a\x00b", "letters, digits"), (parse_site_id, "a%2Fb", "letters, digits"),
        (parse_site_id, "site\u200b", "letters, digits"), (parse_site_id, "", "1 to 128"),
        (emoji_list, " , ", "1 to 10 emoji names"), (emoji_list, ",".join("abcdefghijk"), "1 to 10 emoji names"),
        (text(5), "toolong", "1 to 5 characters"), (text(5), "  ", "1 to 5 characters"),
        (target, "x" * 201, "user group, role or channel"),
    ],
)
def test_shared_parsers_refuse_naming_what_is_accepted(parse: Callable[[str], Any], raw: str, names: str) -> None:
    """A refusal is a SettingError (so also the ValueError load_settings catches) on one line saying what works."""
    with pytest.raises(SettingError) as info:
        parse(raw)
    assert isinstance(info.value, ValueError)
    assert names in str(info.value) and "\n" not in str(info.value)


def test_every_env_variable_and_workspace_key_has_a_spec_with_help() -> None:
    """Each Settings field, each variable in .env.example and each WorkspaceSettings field has a described spec."""
    assert [s.field for s in ENV_SPECS] == [f.name for f in fields(Settings)]
    documented = set(re.findall(r"^([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.MULTILINE))
    assert documented == {s.name for s in ENV_SPECS}
    assert [s.field for s in WORKSPACE_SPECS] == [f.name for f in fields(WorkspaceSettings)]
    assert SETTING_KEYS == tuple(s.key for s in WORKSPACE_SPECS)
    for spec in (*ENV_SPECS, *WORKSPACE_SPECS):
        assert spec.help.strip() and spec.accepted.strip(), spec.name
    for spec in WORKSPACE_SPECS:
        assert spec.env is None or env_spec(spec.env) is not None, spec.name


@pytest.mark.parametrize(
    ("key", "raw"),
    [("site_id", "demo-site"), ("session_strategy", "Thread"), ("idle_timeout", "45m"), ("idle_timeout", "1.5h"),
     ("reply_mode", "ALL"), ("feedback_good", ":+1:, thumbsup"), ("feedback_bad", "-1"),
     ("feedback_raters", "anyone"), ("fallback_text", "Ask #help"), ("low_confidence_note", "Not sure"),
     ("send_email", "yes"), ("escalation_target", "none"), ("escalation_target", "S123")],
)
def test_workspace_values_are_stored_in_a_form_that_parses_back(key: str, raw: str) -> None:
    """What set() stores re-reads as the same value after a restart."""
    spec = workspace_spec(key)
    assert spec is not None
    value = spec.parse(raw)
    assert spec.parse(spec.stored(value)) == value


def _env_value(variable: str, raw: str) -> Any:
    spec = env_spec(variable)
    assert spec is not None
    return getattr(load_settings({variable: raw}), spec.field)


@pytest.mark.parametrize(
    ("key", "raw", "expected"),
    [("idle_timeout", "45m", 2700.0), ("idle_timeout", "2h", 7200.0), ("idle_timeout", "90", 90.0),
     ("idle_timeout", "1d", 86400.0), ("send_email", "on", True), ("send_email", "No", False),
     ("send_email", "1", True), ("site_id", " demo-site ", "demo-site")],
)
def test_env_and_workspace_agree_on_shared_kinds(key: str, raw: str, expected: Any) -> None:
    """A workspace key whose default comes from a variable parses a value exactly as that variable does."""
    spec = workspace_spec(key)
    assert spec is not None and spec.env is not None
    assert _env_value(spec.env, raw) == expected
    assert spec.parse(raw) == expected


@pytest.mark.parametrize(
    ("key", "raw"),
    [("idle_timeout", "soon"), ("idle_timeout", "0"), ("send_email", "maybe"), ("site_id", "a/b"), ("site_id", ".."),
     ("site_id", ".")],
)
def test_env_and_workspace_refuse_alike_with_the_same_words(key: str, raw: str) -> None:
    """A value refused for the variable is refused for the workspace key, and the reason reads the same."""
    spec = workspace_spec(key)
    assert spec is not None and spec.env is not None
    with pytest.raises(SettingError) as refused:
        spec.parse(raw)
    with pytest.raises(ConfigError) as env_refused:
        load_settings({spec.env: raw})
    assert str(env_refused.value) == f"{spec.env}: invalid value {raw.strip()!r}: {refused.value}"


def test_workspace_limits_are_an_extra_check_on_the_shared_duration() -> None:
    """The environment takes any positive duration; a workspace idle timeout is also held to 1m..30d."""
    spec = workspace_spec("idle_timeout")
    assert spec is not None
    assert _env_value("SESSION_IDLE_TIMEOUT", "30s") == 30.0
    for raw in ("30s", "31d"):
        with pytest.raises(SettingError, match="between 1m and 30d"):
            spec.parse(raw)


@pytest.mark.parametrize("spelling", ["idle_timeout", "idle-timeout", "Idle_Timeout", "  IDLE-timeout  "])
def test_one_key_lookup_for_every_spelling(spelling: str) -> None:
    """Case, '-' versus '_' and surrounding spaces do not matter, for workspace keys and variables alike."""
    assert WorkspaceSettingsService.spec(spelling) is workspace_spec("idle_timeout") is not None
    assert env_spec(f" Session-{spelling.strip()} ") is env_spec("SESSION_IDLE_TIMEOUT") is not None
    assert WorkspaceSettingsService.spec("colour") is None and env_spec("COLOUR") is None


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    opened = await SqliteStore.open(str(tmp_path / "x.db"))
    try:
        yield opened
    finally:
        await opened.close()


async def _open_session(store: SqliteStore) -> None:
    question = InboundMessage(target=ReplyTarget("slack", "T1", "C1", "C1", "1.0", "U1"), text="hi", event_key="1.0")
    assert await store.record_question(question, key=SESSION_KEY, site_id="demo-site", idle_timeout=1800.0,
                                       now=time.time()) is not None


async def _session_idle_timeout(store: SqliteStore) -> float:
    session = await store.live_session(SESSION_KEY)
    assert session is not None
    return session.idle_timeout


@pytest.mark.parametrize("reset_as", ["idle-timeout", "Idle_Timeout", " IDLE-TIMEOUT "])
async def test_reset_accepts_the_spellings_set_accepts(store: SqliteStore, reset_as: str) -> None:
    """Regression: `set idle-timeout 45m` worked but `reset idle-timeout` said 'unknown setting'. Now reset
    takes any spelling set takes; the value returns to SESSION_IDLE_TIMEOUT and open sessions follow both ways."""
    env = load_settings({"SESSION_IDLE_TIMEOUT": "30m", "UPPZY_SITE_ID": "demo-site"})
    service = WorkspaceSettingsService(store, env)
    await _open_session(store)

    assert await service.set("slack", "T1", "idle-timeout", "45m", by="U9") == "45 minutes"
    assert (await service.get("slack", "T1")).idle_timeout == 2700.0
    assert await _session_idle_timeout(store) == 2700.0
    assert (await WorkspaceSettingsService(store, env).get("slack", "T1")).idle_timeout == 2700.0  # stored

    assert await service.reset("slack", "T1", reset_as, by="U9") == "30 minutes"
    assert (await service.get("slack", "T1")).idle_timeout == env.session_idle_timeout == 1800.0
    assert await _session_idle_timeout(store) == 1800.0
    assert await store.workspace_settings("slack", "T1") == {}
    assert await service.describe("slack", "T1", reset_as) == [
        ("idle_timeout", "30 minutes", "close a conversation after this much silence")]


async def test_unknown_keys_are_refused_alike_by_set_reset_and_describe(store: SqliteStore) -> None:
    """Every entry point names the settable keys for a key it does not know."""
    service = WorkspaceSettingsService(store, Settings())
    for call in (service.set("slack", "T1", "colour", "blue", by=None), service.reset("slack", "T1", "colour", by=None),
                 service.describe("slack", "T1", "colour")):
        with pytest.raises(SettingError, match=r"^unknown setting 'colour'; settable keys: site_id, "):
            await call


async def test_channel_modes_stay_right_in_a_bounded_cache(store: SqliteStore,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The channel-mode cache holds at most its size; a forgotten channel is read again from the store."""
    monkeypatch.setattr(workspace, "MODE_CACHE_SIZE", 2)
    service = WorkspaceSettingsService(store, Settings())
    await service.set_channel_mode("slack", "T1", "C0", "ALL", by="U9")
    modes = [await service.channel_mode("slack", "T1", f"C{n}") for n in range(5)]
    assert modes == ["all", "mention", "mention", "mention", "mention"]
    assert len(service._modes) == 2
    assert await service.channel_mode("slack", "T1", "C0") == "all"
    with pytest.raises(SettingError, match=r"^channel mode must be one of: mention, all, off \(got 'loud'\)$"):
        await service.set_channel_mode("slack", "T1", "C0", "loud", by="U9")
