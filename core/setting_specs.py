"""One table of every setting (environment variables and per-workspace keys) sharing one set of value parsers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core.messages import human_duration
from core.setting_parsers import (
    CHANNEL_MODES,
    DAY,
    HTTP,
    PROMPTS_ACCEPTED,
    RATERS,
    SESSION_STRATEGIES,
    WEBSOCKET,
    Parser,
    choice,
    credential,
    database_url,
    emoji_list,
    fernet_keys,
    id_set,
    int_ids,
    number,
    parse_bool,
    parse_duration,
    parse_port,
    parse_site_id,
    plain,
    positive_float,
    positive_int,
    prompt_list,
    refine,
    shard_ids,
    tag_name,
    target,
    text,
    url,
)

__all__ = ["ENV_SPECS", "WORKSPACE_SPECS", "SettingSpec", "env_spec", "render_value", "setting_key", "workspace_spec"]

def render_value(value: Any) -> str:
    """A value the way an admin would type it: on/off, comma-joined lists, 'none'."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple):
        return ",".join(value)
    return "none" if value is None else str(value)


@dataclass(frozen=True, slots=True)
class SettingSpec:
    """One setting (name, parser, accepted values, help) filling the field named like it, lower-cased; `render`
    shows a workspace value, `env` names the variable of its default, `secret` hides an environment value."""

    name: str
    parse: Parser
    accepted: str
    help: str
    render: Callable[[Any], str] = render_value
    env: str | None = None
    secret: bool = False

    @property
    def key(self) -> str:
        """The workspace key (same as name)."""
        return self.name

    @property
    def field(self) -> str:
        """The Settings or WorkspaceSettings field this setting fills."""
        return self.name.lower()

    def stored(self, value: Any) -> str:
        """How a parsed value is saved so that parse reads it back (durations as seconds)."""
        return repr(value) if isinstance(value, float) else render_value(value)


DURATION = "a duration: 250ms, 45s, 30m, 2h, 1d or bare seconds"
HTTP_URL = "an http:// or https:// URL"
ANSWER_CHARS = "a whole number from 1000 to 1000000"
WORKSPACE_LABELS = "a whole number from 0 to 100000"
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
_Spec = SettingSpec  # short, so each row of the tables below fits on a line or two

ENV_SPECS: tuple[SettingSpec, ...] = (
    _Spec("UPPZY_API_KEY", credential, "an Uppzy M2M API key", "Uppzy M2M API key; never logged", secret=True),
    _Spec("UPPZY_SITE_ID", parse_site_id, "an Uppzy site id", "default Uppzy site; admins may override it"),
    _Spec("UPPZY_BASE_URL", url(HTTP, trailing_slash=False), HTTP_URL, "Uppzy API base URL"),
    _Spec("UPPZY_TENANT_ID", plain, "an Uppzy tenant id", "enables the tenant-limits connectivity check"),
    _Spec("UPPZY_CONNECT_TIMEOUT", parse_duration, DURATION, "connect timeout of every Uppzy call"),
    _Spec("UPPZY_TIMEOUT", parse_duration, DURATION, "total timeout of every quick Uppzy call (submit, status…)"),
    _Spec("UPPZY_CHAT_TIMEOUT", parse_duration, DURATION, "total timeout of a sync chat call"),
    _Spec("UPPZY_MAX_ATTEMPTS", positive_int, "a whole number above zero", "attempts per Uppzy call on 429/5xx"),
    _Spec("UPPZY_RETRY_BUDGET", parse_duration, DURATION, "total time the retries of one call may take"),
    _Spec("UPPZY_POLL_RATE", positive_float, "a number above zero",
          "ceiling of the adaptive status-poll budget, calls per second, for the whole deployment"),
    _Spec("UPPZY_ANSWER_TIMEOUT", parse_duration, DURATION, "how long one answer may take before the user is told"),
    _Spec("UPPZY_ANSWER_MAX_CHARS", number(int, lambda n: 1000 <= n <= 1_000_000, ANSWER_CHARS), ANSWER_CHARS,
          "longer answers are shortened to this many characters, with a note saying so"),
    _Spec("UPPZY_SEND_EMAIL", parse_bool, "on/off, true/false, yes/no, 1/0", "default of the workspace send_email"),
    _Spec("SLACK_BOT_TOKEN", credential, "a Slack bot token (xoxb-…)", "enables Slack", secret=True),
    _Spec("SLACK_APP_TOKEN", credential, "a Slack app token (xapp-…)", "Socket Mode when set, else HTTP", secret=True),
    _Spec("SLACK_SIGNING_SECRET", credential, "a signing secret", "verifies Slack's HTTP requests", secret=True),
    _Spec("SLACK_CLIENT_ID", credential, "the app's client id (Basic Information)",
          "with SLACK_CLIENT_SECRET and no SLACK_BOT_TOKEN: \"Add to Slack\" for many workspaces (OAuth, HTTP mode)"),
    _Spec("SLACK_CLIENT_SECRET", credential, "the app's client secret (Basic Information)",
          "exchanges install codes for each workspace's bot token; never logged", secret=True),
    _Spec("SLACK_REDIRECT_URI", url(HTTP), HTTP_URL,
          "OAuth redirect URL, https://<host>/slack/oauth_redirect (optional: needed when the app lists several)"),
    _Spec("SLACK_API_BASE_URL", url(HTTP, trailing_slash=True), HTTP_URL, "Slack Web API base (GovSlack, tests)"),
    _Spec("SLACK_ADMIN_USER_IDS", id_set, "user ids, comma-separated", "more Slack users allowed admin commands"),
    _Spec("DISCORD_BOT_TOKEN", credential, "a Discord bot token", "enables Discord", secret=True),
    _Spec("DISCORD_API_BASE_URL", url(HTTP, trailing_slash=False), HTTP_URL, "Discord REST base (e.g. a proxy)"),
    _Spec("DISCORD_GATEWAY_URL", url(WEBSOCKET), "a ws:// or wss:// URL", "Discord gateway"),
    _Spec("DISCORD_GUILD_IDS", int_ids, "server ids, comma-separated", "servers whose slash commands sync at start"),
    _Spec("DISCORD_SHARD_COUNT", positive_int, "a whole number above zero",
          "total Discord shards of the bot, the same on every replica (unset: what Discord recommends)"),
    _Spec("DISCORD_SHARD_IDS", shard_ids, "shard ids from 0 to DISCORD_SHARD_COUNT-1, comma-separated",
          "the shards this replica runs (unset: all of them)"),
    _Spec("DATABASE_URL", database_url, "sqlite:///path/to/file.db or postgresql://user:pass@host:5432/db",
          "where conversations and settings are kept: a SQLite file (one process) or PostgreSQL (replicas)"),
    _Spec("SECRETS_KEY", lambda raw: ",".join(fernet_keys(raw)), "Fernet keys, comma-separated (the first encrypts)",
          "encrypts tokens and keys stored in the database; never logged", secret=True),
    _Spec("DATABASE_POOL_MIN", positive_int, "a whole number above zero", "PostgreSQL connections kept open"),
    _Spec("DATABASE_POOL_MAX", positive_int, "a whole number above zero", "PostgreSQL connections at most"),
    _Spec("REPLICA_LEASE", refine(parse_duration, lambda s: 2 <= s <= 300, "must be between 2s and 5m"),
          "a duration from 2s to 5m", "with PostgreSQL: how long a silent replica keeps its questions before another "
          "takes them over"),
    _Spec("SESSION_IDLE_TIMEOUT", parse_duration, DURATION, "close conversations after this much silence"),
    _Spec("SESSION_CLOSE_RATE", positive_float, "a number above zero", "Uppzy session closes per second at most"),
    _Spec("METRICS_WORKSPACE_LABELS", number(int, lambda n: 0 <= n <= 100_000, WORKSPACE_LABELS), WORKSPACE_LABELS,
          "workspaces that keep their own id in metric labels (the first seen); the others count as \"other\""),
    _Spec("PORT", parse_port, "a port number, 0 to 65535", "HTTP port: Slack HTTP mode, health and metrics"),
    _Spec("LOG_LEVEL", choice(LOG_LEVELS, upper=True), ", ".join(LOG_LEVELS), "how much is logged"),
    _Spec("LOG_FORMAT", choice(("text", "json")), "text, json", "plain text or one JSON object per line"),
)

WORKSPACE_SPECS: tuple[SettingSpec, ...] = (
    _Spec("site_id", parse_site_id, "an Uppzy site id", "which Uppzy site answers in this workspace",
          env="UPPZY_SITE_ID"),
    _Spec("session_strategy", choice(SESSION_STRATEGIES), ", ".join(SESSION_STRATEGIES),
          "one conversation per user per channel, per thread, or per user"),
    _Spec("idle_timeout", refine(parse_duration, lambda s: 60 <= s <= 30 * DAY, "must be between 1m and 30d"),
          "a duration from 1m to 30d, e.g. 30m", "close a conversation after this much silence",
          render=human_duration, env="SESSION_IDLE_TIMEOUT"),
    _Spec("reply_mode", choice(CHANNEL_MODES), ", ".join(CHANNEL_MODES),
          "default for channels: answer mentions, every message, or nothing"),
    _Spec("feedback_good", emoji_list, "emoji names, comma-separated", "reactions that rate an answer good"),
    _Spec("feedback_bad", emoji_list, "emoji names, comma-separated", "reactions that rate an answer bad"),
    _Spec("feedback_raters", choice(RATERS), ", ".join(RATERS), "who may rate an answer: the asker only, or anyone"),
    _Spec("fallback_text", text(500), "text up to 500 characters", "what users see when no answer can be had"),
    _Spec("low_confidence_note", text(300), "text up to 300 characters", "note added under low-confidence answers"),
    _Spec("send_email", parse_bool, "on, off", "send the asker's email address to Uppzy", env="UPPZY_SEND_EMAIL"),
    _Spec("escalation_target", target, "a user group, role or channel, or none",
          "who is pinged when an answer is rated bad"),
    _Spec("suggested_prompts", prompt_list, PROMPTS_ACCEPTED,
          "prompts offered when someone opens the app's Messages tab (Slack)", render=lambda v: v or "none"),
    _Spec("answered_tag", tag_name, "a forum tag name, or none",
          "Discord forums: the tag put on a post once the bot has answered it"),
    _Spec("escalated_tag", tag_name, "a forum tag name, or none",
          "Discord forums: the tag put on a post once it is escalated (👎 or \"Talk to a human\")"),
)


def setting_key(name: str) -> str:
    """The one spelling of a key every entry point looks up: case, '-' versus '_' and outer spaces ignored."""
    return name.strip().lower().replace("-", "_")


_ENV_BY_KEY = {setting_key(spec.name): spec for spec in ENV_SPECS}
_WORKSPACE_BY_KEY = {setting_key(spec.name): spec for spec in WORKSPACE_SPECS}


def env_spec(name: str) -> SettingSpec | None:
    """The spec of an environment variable (UPPZY_SITE_ID, uppzy-site-id …), or None."""
    return _ENV_BY_KEY.get(setting_key(name))


def workspace_spec(key: str) -> SettingSpec | None:
    """The spec of a workspace key (idle_timeout, Idle-Timeout …), or None."""
    return _WORKSPACE_BY_KEY.get(setting_key(key))
