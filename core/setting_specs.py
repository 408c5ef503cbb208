"""One table of every setting (environment variables and per-workspace keys) sharing one set of value parsers."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from core.messages import human_duration

__all__ = [
    "CHANNEL_MODES", "ENV_SPECS", "GENERATE_FERNET_KEY", "HTTP", "RATERS", "SESSION_STRATEGIES", "WEBSOCKET",
    "WORKSPACE_SPECS", "SettingError", "SettingSpec", "choice", "database_url", "emoji_list", "env_spec",
    "fernet_keys", "id_set", "int_ids",
    "normalize_emoji", "number", "parse_bool", "parse_duration", "parse_port", "parse_site_id", "plain",
    "positive_float", "positive_int", "postgres_url", "prompt_list", "refine", "render_value", "setting_key",
    "sqlite_path", "tag_name", "target", "text", "url",
    "workspace_spec",
]

Parser = Callable[[str], Any]

SESSION_STRATEGIES = ("user-channel", "thread", "user")
CHANNEL_MODES = ("mention", "all", "off")
RATERS = ("asker", "anyone")
HTTP = ("http://", "https://")
WEBSOCKET = ("ws://", "wss://")
DAY = 86400.0


class SettingError(ValueError):
    """A value (or key) is refused; the text says what is accepted, e.g. 'must be one of: a, b'."""


# ---- shared value parsers: text in, value out, SettingError (a ValueError) naming what is accepted --------

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": DAY, "": 1.0}
_TRUE, _FALSE = frozenset({"1", "true", "yes", "on"}), frozenset({"0", "false", "no", "off"})
_SITE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_SKIN_TONE = re.compile(r"::skin-tone-\d$|[\U0001F3FB-\U0001F3FF\uFE0F]")


def parse_duration(text: str) -> float:
    """Parse '45s', '30m', '2h', '1d', '250ms' or bare seconds into seconds; reject zero and junk."""
    match = _DURATION.match(text)
    if not match:
        raise SettingError("must be a duration such as 45s, 30m or 2h (units ms, s, m, h, d; a bare number is seconds)")
    value = float(match.group(1)) * _UNIT_SECONDS[(match.group(2) or "").lower()]
    if value <= 0:
        raise SettingError("must be a duration greater than zero")
    return value


def refine(parse: Parser, ok: Callable[[Any], object], problem: str) -> Parser:
    """`parse`, then refuse with `problem` any value for which ok(value) is false (an extra check on top)."""

    def parse_checked(raw: str) -> Any:
        value = parse(raw)
        if not ok(value):
            raise SettingError(problem)
        return value

    return parse_checked


def parse_bool(raw: str) -> bool:
    """on/off, true/false, yes/no, 1/0 (any case)."""
    value = raw.strip().lower()
    if value in _TRUE or value in _FALSE:
        return value in _TRUE
    raise SettingError("must be on or off (or true/false, yes/no, 1/0)")


def choice(allowed: Iterable[str], *, upper: bool = False) -> Parser:
    """One of a fixed set of words, case-insensitive; the result is lower-case (upper-case if `upper`)."""
    words = tuple(allowed)

    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in words:
            raise SettingError(f"must be one of: {', '.join(words)}")
        return value.upper() if upper else value

    return parse


def number(kind: type[int] | type[float], ok: Callable[[float], bool], problem: str) -> Parser:
    """An int or float for which ok(value) holds; anything else is refused with `problem`."""

    def convert(raw: str) -> float:
        try:
            return kind(raw.strip())
        except ValueError:
            raise SettingError(problem) from None

    return refine(convert, ok, problem)


positive_float = number(float, lambda n: n > 0, "must be a number greater than zero")
positive_int = number(int, lambda n: n > 0, "must be a whole number greater than zero")
parse_port = number(int, lambda n: 0 <= n <= 65535, "must be a port number from 0 to 65535")


def url(schemes: tuple[str, ...], *, trailing_slash: bool | None = None) -> Parser:
    """A URL with one of the schemes; trailing_slash True/False adds/removes the final '/' (None: as written)."""

    def parse(raw: str) -> str:
        value = raw.strip()
        if trailing_slash is not None:
            value = value.rstrip("/") + ("/" if trailing_slash else "")
        if not value.startswith(schemes) or len(value) <= len(value.split("://")[0]) + 3:
            raise SettingError(f"must be a URL starting with {' or '.join(schemes)}")
        return value

    return parse


def _parts(raw: str) -> list[str]:
    return [part.strip() for part in raw.replace(";", ",").split(",") if part.strip()]


def id_set(raw: str) -> frozenset[str]:
    """Ids separated by commas or semicolons, blanks and duplicates dropped."""
    return frozenset(_parts(raw))


def int_ids(raw: str) -> tuple[int, ...]:
    """Numeric ids in the order written, duplicates dropped."""
    try:
        return tuple(dict.fromkeys(int(part) for part in _parts(raw)))
    except ValueError:
        raise SettingError("must be a comma-separated list of numeric server ids") from None


def shard_ids(raw: str) -> tuple[int, ...]:
    """Discord shard ids (whole numbers from 0), comma-separated, each once; sorted."""
    try:
        ids = [int(part) for part in _parts(raw)]
    except ValueError:
        raise SettingError("must be a comma-separated list of shard ids, whole numbers from 0") from None
    if any(i < 0 for i in ids):
        raise SettingError("must be a comma-separated list of shard ids, whole numbers from 0")
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise SettingError(f"lists shard {repeated[0]} twice: each shard id once")
    return tuple(sorted(ids))


def plain(raw: str) -> str:
    """Any text, surrounding whitespace dropped."""
    return raw.strip()


def credential(raw: str) -> str:
    """A key or token as pasted: outer spaces and line breaks dropped; any other space, invisible or non-ASCII
    character refused (copied from a web page or chat, it makes every call fail later, far from the cause).
    The problem names the character's code point and position, never the value."""
    value = raw.strip(" \t\r\n")
    for position, char in enumerate(value, start=1):
        if not "!" <= char <= "~":
            kind = "a space" if char.isspace() else "an invisible character" if not char.isprintable() or \
                unicodedata.category(char) in ("Cf", "Zs", "Zl", "Zp", "Mn") else "a non-ASCII character"
            raise SettingError(f"contains {kind} (U+{ord(char):04X}) at position {position}: "
                               "paste it again as plain text, without spaces or line breaks")
    return value


GENERATE_FERNET_KEY = 'python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'
_FERNET_KEY = re.compile(r"[A-Za-z0-9_-]{43}=")


def fernet_keys(raw: str) -> list[str]:
    """SECRETS_KEY: one or more Fernet keys (url-safe base64 of 32 bytes), comma-separated, spaces around commas
    allowed; the first encrypts, any decrypts. The problem names a key by its position, never its value."""
    keys = [part.strip(" \t\r\n") for part in raw.split(",")]
    keys = [key for key in keys if key]
    how = f"generate one with: {GENERATE_FERNET_KEY}"
    if not keys:
        raise SettingError(f"is empty: it needs one or more Fernet keys, comma-separated; {how}")
    for position, key in enumerate(keys, start=1):
        if not _FERNET_KEY.fullmatch(key):
            which = "it is not" if len(keys) == 1 else f"key {position} of {len(keys)} is not"
            raise SettingError(f"{which} a Fernet key (44 characters of url-safe base64, 32 bytes); {how}")
    return keys


POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def sqlite_path(database_url: str) -> str:
    """The file of a sqlite:/// URL (':memory:' allowed)."""
    if not database_url.startswith("sqlite:///"):
        raise SettingError("must be sqlite:///path/to/file.db (one process) or postgresql://user:password@host:5432/"
                           "database (replicas)")
    path = database_url[len("sqlite:///"):]
    if not path:
        raise SettingError("names no file: use sqlite:///uppzy-bot.db or sqlite:////abs/path.db")
    return path if path == ":memory:" else str(Path(path))


def postgres_url(database_url: str) -> str:
    """A postgresql:// (or postgres://) URL naming a host and a database; the password percent-encoded."""
    try:
        parts = urlsplit(database_url)
        port = parts.port
    except ValueError:
        raise SettingError("is not a valid postgresql:// URL: use postgresql://user:password@host:5432/database "
                           "(percent-encode @ : / in the password)") from None
    if not parts.hostname or not parts.path.strip("/") or any(c.isspace() for c in database_url):
        raise SettingError("must name a host and a database: postgresql://user:password@host:5432/database")
    if port == 0:
        raise SettingError("has port 0: use the server's port, usually 5432")
    return database_url


def database_url(raw: str) -> str:
    """A sqlite:/// or postgresql:// URL, kept as written once it checks out."""
    url = raw.strip()
    if url.startswith(POSTGRES_SCHEMES):
        return postgres_url(url)
    sqlite_path(url)
    return url


# A site id becomes one segment of the Uppzy URL path (quoted there): `.` and `..` would change the path instead.
parse_site_id = refine(plain, lambda v: _SITE_ID.fullmatch(v) and v not in (".", ".."),
                       "must be an Uppzy site id: 1 to 128 letters, digits or . _ : - (not . or ..), one URL path "
                       "segment")


def normalize_emoji(name: str) -> str:
    """Strip ':' wrappers, skin-tone modifiers and variation selectors so 👍🏽 and :+1::skin-tone-3: match."""
    return _SKIN_TONE.sub("", name.strip().strip(":")) if name else name


def emoji_list(raw: str) -> tuple[str, ...]:
    """1 to 10 emoji names separated by commas or spaces, normalised, duplicates dropped."""
    items = tuple(dict.fromkeys(normalize_emoji(p) for p in re.split(r"[\s,]+", raw.strip()) if p.strip(":")))
    if not items or len(items) > 10:
        raise SettingError("must be 1 to 10 emoji names separated by commas, e.g. +1,thumbsup")
    return items


def text(limit: int) -> Parser:
    """Non-empty text of at most `limit` characters."""
    return refine(plain, lambda v: 0 < len(v) <= limit, f"must be 1 to {limit} characters of text")


def target(raw: str) -> str | None:
    """Who is pinged on a bad rating (a user group, role or channel), or None for 'none', 'off' or '-'."""
    value = raw.strip()
    if value.lower() in ("none", "off", "-"):
        return None
    if not value or len(value) > 200:
        raise SettingError("must be a user group, role or channel (or 'none')")
    return value


MAX_PROMPTS = 4  # Slack shows at most four suggested prompts
PROMPT_CHARS = 300
DEFAULT_SUGGESTED_PROMPTS = "What can you help me with? | How do I get started?"
PROMPTS_ACCEPTED = (f"1 to {MAX_PROMPTS} prompts separated by |, each up to {PROMPT_CHARS} characters "
                    "(Title :: message gives a short title), or none")


def prompt_list(raw: str) -> str:
    """Suggested prompts separated by '|' (each 'Title :: message' or just the message), normalised to
    'a | b'; '' (none shown) for none, off, '-' or blank."""
    value = raw.strip()
    if value.lower() in ("", "none", "off", "-"):
        return ""
    prompts = [[half.strip() for half in p.split("::", 1)] for p in value.split("|") if p.strip()]
    if len(prompts) > MAX_PROMPTS or any(not all(halves) or len(" :: ".join(halves)) > PROMPT_CHARS
                                         for halves in prompts):
        raise SettingError(f"must be {PROMPTS_ACCEPTED}")
    return " | ".join(" :: ".join(halves) for halves in prompts)


def tag_name(raw: str) -> str | None:
    """A forum tag's name (Discord allows 1 to 20 characters), or None for 'none', 'off' or '-'."""
    value = raw.strip()
    if value.lower() in ("none", "off", "-"):
        return None
    if not 0 < len(value) <= 20:
        raise SettingError("must be a forum tag name of 1 to 20 characters (or 'none')")
    return value


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
