"""Per-workspace settings: typed specs admins can set from Slack/Discord, defaults from the environment."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from core import messages
from core.config import Settings, parse_duration
from core.text import clean_text

if TYPE_CHECKING:
    from core.ports import Store

__all__ = [
    "CHANNEL_MODES",
    "SESSION_STRATEGIES",
    "SETTING_KEYS",
    "SettingError",
    "SettingSpec",
    "WorkspaceSettings",
    "WorkspaceSettingsService",
    "normalize_emoji",
]

SESSION_STRATEGIES = ("user-channel", "thread", "user")
CHANNEL_MODES = ("mention", "all", "off")
RATERS = ("asker", "anyone")

GENERIC_EMOJI: tuple[tuple[str, ...], tuple[str, ...]] = (("good",), ("bad",))


class SettingError(ValueError):
    """An admin typed an unknown key or a bad value; the text says what is accepted."""


@dataclass(frozen=True, slots=True)
class WorkspaceSettings:
    """The effective settings of one workspace (stored overrides over environment defaults)."""

    site_id: str
    session_strategy: str = "user-channel"
    idle_timeout: float = 1800.0
    reply_mode: str = "mention"
    feedback_good: tuple[str, ...] = ("good",)
    feedback_bad: tuple[str, ...] = ("bad",)
    feedback_raters: str = "asker"
    fallback_text: str = messages.DEFAULT_FALLBACK
    low_confidence_note: str = messages.DEFAULT_LOW_CONFIDENCE_NOTE
    send_email: bool = False
    escalation_target: str | None = None

    def rating_for(self, emoji: str) -> str | None:
        """'good', 'bad' or None for a reaction emoji name, ignoring skin tones."""
        name = normalize_emoji(emoji)
        if name in {normalize_emoji(e) for e in self.feedback_good}:
            return "good"
        if name in {normalize_emoji(e) for e in self.feedback_bad}:
            return "bad"
        return None


_SKIN_TONE = re.compile(r"::skin-tone-\d$|[\U0001F3FB-\U0001F3FF\uFE0F]")


def normalize_emoji(name: str) -> str:
    """Strip ':' wrappers, skin-tone modifiers and variation selectors so 👍🏽 and :+1::skin-tone-3: match."""
    return _SKIN_TONE.sub("", name.strip().strip(":")) if name else name


def _choice(allowed: tuple[str, ...]) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in allowed:
            raise SettingError(f"must be one of: {', '.join(allowed)}")
        return value

    return parse


def _duration(raw: str) -> float:
    try:
        seconds = parse_duration(raw)
    except ValueError:
        raise SettingError("must be a duration such as 45s, 30m or 2h") from None
    if seconds < 60 or seconds > 30 * 86400:
        raise SettingError("must be between 1m and 30d")
    return seconds


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("on", "true", "yes", "1"):
        return True
    if value in ("off", "false", "no", "0"):
        return False
    raise SettingError("must be on or off")


def _emoji_list(raw: str) -> tuple[str, ...]:
    items = tuple(dict.fromkeys(normalize_emoji(p) for p in re.split(r"[\s,]+", raw.strip()) if p.strip(":")))
    if not items or len(items) > 10:
        raise SettingError("must be 1 to 10 emoji names separated by commas, e.g. +1,thumbsup")
    return items


def _text(limit: int) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip()
        if not value or len(value) > limit:
            raise SettingError(f"must be 1 to {limit} characters of text")
        return value

    return parse


def _site(raw: str) -> str:
    value = raw.strip()
    if not re.fullmatch(r"[A-Za-z0-9._:-]{1,128}", value):
        raise SettingError("must be an Uppzy site id (letters, digits, . _ : -)")
    return value


def _target(raw: str) -> str | None:
    value = raw.strip()
    if value.lower() in ("none", "off", "-"):
        return None
    if not value or len(value) > 200:
        raise SettingError("must be a user group, role or channel (or 'none')")
    return value


@dataclass(frozen=True, slots=True)
class SettingSpec:
    """One admin-settable key: how to parse it, how to show it, what it does."""

    key: str
    field: str
    parse: Callable[[str], Any]
    accepted: str
    help: str

    def render(self, value: Any) -> str:
        """Show a value the way an admin would type it."""
        if isinstance(value, bool):
            return "on" if value else "off"
        if isinstance(value, tuple):
            return ",".join(value)
        if self.field == "idle_timeout":
            return messages.human_duration(value)
        return "none" if value is None else str(value)


SPECS: tuple[SettingSpec, ...] = (
    SettingSpec("site_id", "site_id", _site, "an Uppzy site id", "which Uppzy site answers in this workspace"),
    SettingSpec("session_strategy", "session_strategy", _choice(SESSION_STRATEGIES), ", ".join(SESSION_STRATEGIES),
                "one conversation per user per channel, per thread, or per user"),
    SettingSpec("idle_timeout", "idle_timeout", _duration, "a duration from 1m to 30d, e.g. 30m",
                "close a conversation after this much silence"),
    SettingSpec("reply_mode", "reply_mode", _choice(CHANNEL_MODES), ", ".join(CHANNEL_MODES),
                "default for channels: answer mentions, every message, or nothing"),
    SettingSpec("feedback_good", "feedback_good", _emoji_list, "emoji names, comma-separated",
                "reactions that rate an answer good"),
    SettingSpec("feedback_bad", "feedback_bad", _emoji_list, "emoji names, comma-separated",
                "reactions that rate an answer bad"),
    SettingSpec("feedback_raters", "feedback_raters", _choice(RATERS), ", ".join(RATERS),
                "who may rate an answer: the asker only, or anyone"),
    SettingSpec("fallback_text", "fallback_text", _text(500), "text up to 500 characters",
                "what users see when no answer can be had"),
    SettingSpec("low_confidence_note", "low_confidence_note", _text(300), "text up to 300 characters",
                "note added under low-confidence answers"),
    SettingSpec("send_email", "send_email", _bool, "on, off", "send the asker's email address to Uppzy"),
    SettingSpec("escalation_target", "escalation_target", _target, "a user group, role or channel, or none",
                "who is pinged when an answer is rated bad"),
)
SETTING_KEYS = tuple(s.key for s in SPECS)
_BY_KEY = {s.key: s for s in SPECS}


class WorkspaceSettingsService:
    """Reads and writes workspace settings and channel modes, with a write-through cache."""

    def __init__(self, store: Store, settings: Settings, *, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._env = settings
        self._clock = clock
        self._cache: dict[tuple[str, str], WorkspaceSettings] = {}
        self._modes: dict[tuple[str, str, str], str | None] = {}
        self._loading: dict[tuple[str, str], asyncio.Future[WorkspaceSettings]] = {}
        self._version = 0  # bumped by every write, so a read that raced a write is not cached
        self._emoji: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}

    def set_platform_emoji(self, platform: str, good: tuple[str, ...], bad: tuple[str, ...]) -> None:
        """An adapter's own default rating emoji (its names for 👍/👎); admins may still override them."""
        self._emoji[platform] = (good, bad)
        self._version += 1
        for key in [k for k in self._cache if k[0] == platform]:
            del self._cache[key]

    def defaults(self, platform: str) -> WorkspaceSettings:
        """Environment defaults for a platform's workspaces."""
        good, bad = self._emoji.get(platform, GENERIC_EMOJI)
        return WorkspaceSettings(
            site_id=self._env.uppzy_site_id or "", idle_timeout=self._env.session_idle_timeout,
            feedback_good=good, feedback_bad=bad, send_email=self._env.uppzy_send_email,
        )

    async def get(self, platform: str, workspace_id: str) -> WorkspaceSettings:
        """Effective settings of a workspace."""
        key = (platform, workspace_id)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        loading = self._loading.get(key)
        if loading is not None:  # a burst of first messages shares one read
            try:
                return await asyncio.shield(loading)
            except asyncio.CancelledError:
                if loading.cancelled():  # the reader was cancelled, not us: read for ourselves
                    return await self.get(platform, workspace_id)
                raise
        future: asyncio.Future[WorkspaceSettings] = asyncio.get_running_loop().create_future()
        self._loading[key] = future
        try:
            effective = await self._load(platform, workspace_id)
            future.set_result(effective)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved here so an unawaited failure is not reported twice
            raise
        finally:
            self._loading.pop(key, None)
        return effective

    async def _load(self, platform: str, workspace_id: str) -> WorkspaceSettings:
        key = (platform, workspace_id)
        version = self._version
        effective = self.defaults(platform)
        stored = await self._store.workspace_settings(platform, workspace_id)
        for name, raw in stored.items():
            spec = _BY_KEY.get(name)
            if spec is None:
                continue
            try:
                effective = replace(effective, **{spec.field: spec.parse(raw)})
            except SettingError:
                continue  # a value valid under an older version; the default applies
        if version == self._version:
            self._cache[key] = effective
        return effective

    async def set(self, platform: str, workspace_id: str, key: str, raw: str, *, by: str | None) -> str:
        """Validate and store one setting; returns how it now reads. Raises SettingError with the fix."""
        spec = _BY_KEY.get(key.strip().lower().replace("-", "_"))
        if spec is None:
            raise SettingError(f"unknown setting {key[:40]!r}; settable keys: {', '.join(SETTING_KEYS)}")
        raw = clean_text(raw)  # half an emoji or a NUL from a broken client must not fail the database write
        try:
            value = spec.parse(raw)
        except SettingError as exc:
            raise SettingError(f"{spec.key} {exc} (got {raw.strip()[:60]!r})") from None
        stored = "none" if value is None else spec.render(value) if spec.field != "idle_timeout" else raw.strip()
        await self._store.put_workspace_setting(platform, workspace_id, spec.key, stored, by=by, now=self._clock())
        self._version += 1
        self._cache.pop((platform, workspace_id), None)
        if spec.field == "idle_timeout":
            await self._store.set_idle_timeout(platform, workspace_id, value)
        return spec.render(value)

    async def reset(self, platform: str, workspace_id: str, key: str, *, by: str | None) -> None:
        """Drop an override so the environment default applies again."""
        spec = _BY_KEY.get(key.strip().lower())
        if spec is None:
            raise SettingError(f"unknown setting {key[:40]!r}; settable keys: {', '.join(SETTING_KEYS)}")
        await self._store.put_workspace_setting(platform, workspace_id, spec.key, None, by=by, now=self._clock())
        self._version += 1
        self._cache.pop((platform, workspace_id), None)
        if spec.field == "idle_timeout":
            await self._store.set_idle_timeout(platform, workspace_id, self._env.session_idle_timeout)

    async def describe(self, platform: str, workspace_id: str) -> list[tuple[str, str, str]]:
        """(key, current value, what it does) for every setting, for status and App Home."""
        current = await self.get(platform, workspace_id)
        return [(s.key, s.render(getattr(current, s.field)), s.help) for s in SPECS]

    @staticmethod
    def spec(key: str) -> SettingSpec | None:
        """The spec of a key, for autocomplete and help."""
        return _BY_KEY.get(key)

    async def channel_mode(self, platform: str, workspace_id: str, channel_id: str) -> str:
        """How the bot listens in one channel: the channel's own mode, else the workspace default."""
        key = (platform, workspace_id, channel_id)
        if key not in self._modes:
            if len(self._modes) > 50_000:
                self._modes.clear()
            self._modes[key] = await self._store.channel_mode(platform, workspace_id, channel_id)
        mode = self._modes[key]
        return mode or (await self.get(platform, workspace_id)).reply_mode

    async def set_channel_mode(self, platform: str, workspace_id: str, channel_id: str, raw: str, *,
                               by: str | None) -> str:
        """Set one channel's mode; raises SettingError listing the accepted modes."""
        mode = raw.strip().lower()
        if mode not in CHANNEL_MODES:
            raise SettingError(f"channel mode must be one of: {', '.join(CHANNEL_MODES)} (got {raw.strip()[:40]!r})")
        await self._store.put_channel_mode(platform, workspace_id, channel_id, mode, by=by, now=self._clock())
        self._modes[(platform, workspace_id, channel_id)] = mode
        return mode
