"""Per-workspace settings: effective values (stored overrides over environment defaults) and the service admins use."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from cachetools import LRUCache

from core import messages
from core.config import Settings
from core.inflight import InFlight
from core.setting_parsers import (
    CHANNEL_MODES,
    DEFAULT_SUGGESTED_PROMPTS,
    SESSION_STRATEGIES,
    SettingError,
    choice,
    normalize_emoji,
)
from core.setting_specs import WORKSPACE_SPECS, SettingSpec, workspace_spec
from core.text import clean_text

if TYPE_CHECKING:
    from core.ports import Store

__all__ = [
    "CHANNEL_MODES",
    "GENERIC_EMOJI",
    "SESSION_STRATEGIES",
    "SETTING_KEYS",
    "SettingError",
    "SettingSpec",
    "WorkspaceSettings",
    "WorkspaceSettingsService",
    "normalize_emoji",
]

GENERIC_EMOJI: tuple[tuple[str, ...], tuple[str, ...]] = (("good",), ("bad",))
SPECS = WORKSPACE_SPECS
SETTING_KEYS = tuple(spec.key for spec in SPECS)
MODE_CACHE_SIZE = 50_000  # channels whose mode is remembered; the least recently asked are forgotten first
_channel_mode = choice(CHANNEL_MODES)


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
    suggested_prompts: str = DEFAULT_SUGGESTED_PROMPTS  # "a | Title :: b"; "" shows none
    answered_tag: str | None = None  # Discord forum posts: tag names applied after an answer / an escalation
    escalated_tag: str | None = None

    def rating_for(self, emoji: str) -> str | None:
        """'good', 'bad' or None for a reaction emoji name, ignoring skin tones."""
        name = normalize_emoji(emoji)
        if name in {normalize_emoji(e) for e in self.feedback_good}:
            return "good"
        if name in {normalize_emoji(e) for e in self.feedback_bad}:
            return "bad"
        return None


class WorkspaceSettingsService:
    """Reads and writes workspace settings and channel modes, with a write-through cache."""

    def __init__(self, store: Store, settings: Settings, *, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._env = settings
        self._clock = clock
        self._cache: dict[tuple[str, str], WorkspaceSettings] = {}
        self._modes: LRUCache[tuple[str, str, str], str | None] = LRUCache(maxsize=MODE_CACHE_SIZE)
        self._loading: InFlight[tuple[str, str], WorkspaceSettings] = InFlight()
        self._version = 0  # bumped by every write, so a read that raced a write is not cached
        self._mode_version = 0  # the same for channel modes
        self._emoji: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}

    def set_platform_emoji(self, platform: str, good: tuple[str, ...], bad: tuple[str, ...]) -> None:
        """An adapter's own default rating emoji (its names for 👍/👎); admins may still override them."""
        self._emoji[platform] = (good, bad)
        self._version += 1
        for key in [k for k in self._cache if k[0] == platform]:
            del self._cache[key]

    def forget(self, platform: str | None, workspace_id: str | None) -> None:
        """Another process changed a workspace's settings or channel modes (None: any may have changed): read them
        again on next use."""
        self._version += 1
        self._mode_version += 1
        if platform is None:
            self._cache.clear()
            self._modes.clear()
            return
        self._cache.pop((platform, workspace_id or ""), None)
        for key in [k for k in self._modes if k[0] == platform and k[1] == workspace_id]:
            del self._modes[key]

    def defaults(self, platform: str) -> WorkspaceSettings:
        """Environment defaults for a platform's workspaces: each spec with an `env` takes that variable's value."""
        good, bad = self._emoji.get(platform, GENERIC_EMOJI)
        from_env = {spec.field: getattr(self._env, spec.env.lower()) for spec in SPECS if spec.env}
        return replace(WorkspaceSettings(site_id="", feedback_good=good, feedback_bad=bad),
                       **{name: value for name, value in from_env.items() if value is not None})

    async def get(self, platform: str, workspace_id: str) -> WorkspaceSettings:
        """Effective settings of a workspace."""
        key = (platform, workspace_id)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        # A burst of first messages shares one read.
        return await self._loading.load(key, lambda: self._load(platform, workspace_id))

    async def _load(self, platform: str, workspace_id: str) -> WorkspaceSettings:
        key = (platform, workspace_id)
        version = self._version
        effective = self.defaults(platform)
        stored = await self._store.workspace_settings(platform, workspace_id)
        for name, raw in stored.items():
            spec = workspace_spec(name)
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
        spec = self._known(key)
        raw = clean_text(raw)  # half an emoji or a NUL from a broken client must not fail the database write
        try:
            value = spec.parse(raw)
        except SettingError as exc:
            raise SettingError(f"{spec.key} {exc} (got {raw.strip()[:60]!r})") from None
        await self._write(platform, workspace_id, spec, spec.stored(value), by=by)
        await self._apply(platform, workspace_id, spec, value)
        return spec.render(value)

    async def reset(self, platform: str, workspace_id: str, key: str, *, by: str | None) -> str:
        """Drop an override so the environment default applies again; returns how the default reads."""
        spec = self._known(key)
        await self._write(platform, workspace_id, spec, None, by=by)
        value = getattr(self.defaults(platform), spec.field)
        await self._apply(platform, workspace_id, spec, value)
        return spec.render(value)

    async def describe(self, platform: str, workspace_id: str,
                       key: str | None = None) -> list[tuple[str, str, str]]:
        """(key, current value, what it does) for every setting (or just `key`), for status and App Home."""
        current = await self.get(platform, workspace_id)
        specs = SPECS if key is None else (self._known(key),)
        return [(s.key, s.render(getattr(current, s.field)), s.help) for s in specs]

    @staticmethod
    def spec(key: str) -> SettingSpec | None:
        """The spec of a key (any case, '-' or '_'), for autocomplete and help."""
        return workspace_spec(key)

    @staticmethod
    def _known(key: str) -> SettingSpec:
        spec = workspace_spec(key)
        if spec is None:
            raise SettingError(f"unknown setting {key[:40]!r}; settable keys: {', '.join(SETTING_KEYS)}")
        return spec

    async def _write(self, platform: str, workspace_id: str, spec: SettingSpec, stored: str | None, *,
                     by: str | None) -> None:
        await self._store.put_workspace_setting(platform, workspace_id, spec.key, stored, by=by, now=self._clock())
        self._version += 1
        self._cache.pop((platform, workspace_id), None)

    async def _apply(self, platform: str, workspace_id: str, spec: SettingSpec, value: Any) -> None:
        """A new idle timeout also applies to the workspace's open sessions."""
        if spec.field == "idle_timeout":
            await self._store.set_idle_timeout(platform, workspace_id, value)

    async def channel_mode(self, platform: str, workspace_id: str, channel_id: str) -> str:
        """How the bot listens in one channel: the channel's own mode, else the workspace default."""
        key = (platform, workspace_id, channel_id)
        try:
            mode = self._modes[key]
        except KeyError:  # not asked lately: read it (None: the channel follows the workspace default)
            version = self._mode_version
            mode = await self._store.channel_mode(platform, workspace_id, channel_id)
            if version == self._mode_version:  # a write that raced this read wins
                self._modes[key] = mode
        return mode or (await self.get(platform, workspace_id)).reply_mode

    async def set_channel_mode(self, platform: str, workspace_id: str, channel_id: str, raw: str, *,
                               by: str | None) -> str:
        """Set one channel's mode; raises SettingError listing the accepted modes."""
        try:
            mode = _channel_mode(raw)
        except SettingError as exc:
            raise SettingError(f"channel mode {exc} (got {raw.strip()[:40]!r})") from None
        await self._store.put_channel_mode(platform, workspace_id, channel_id, mode, by=by, now=self._clock())
        self._mode_version += 1
        self._modes[(platform, workspace_id, channel_id)] = mode
        return mode
