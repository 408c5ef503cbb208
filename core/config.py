"""Typed settings read once at the entry point, so nothing else ever touches os.environ."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

__all__ = ["ConfigError", "Secret", "Settings", "load_settings", "parse_duration"]


class ConfigError(ValueError):
    """A setting is missing or malformed; its text is the one line shown to the operator."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable


class Secret:
    """Holds a key or token so that repr, str and f-strings never reveal it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """Return the real value; call only where it is handed to a client library."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(text: str) -> float:
    """Parse '45s', '30m', '2h', '1d', '250ms' or bare seconds into seconds; reject zero and junk."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a duration; use a number with s, m or h, e.g. 45s, 30m, 2h")
    value = float(match.group(1)) * _UNIT_SECONDS[(match.group(2) or "").lower() or None]
    if value <= 0:
        raise ValueError("a duration must be greater than zero")
    return value


@dataclass(frozen=True, slots=True)
class Settings:
    """Every setting of the bot; secrets are Secret so a logged Settings shows none of them."""

    uppzy_api_key: Secret | None = None
    uppzy_site_id: str | None = None
    uppzy_base_url: str = "https://api.uppzy.com/api/v1"
    uppzy_tenant_id: str | None = None
    uppzy_connect_timeout: float = 5.0
    uppzy_timeout: float = 10.0
    uppzy_chat_timeout: float = 75.0
    uppzy_max_attempts: int = 4
    uppzy_retry_budget: float = 30.0
    uppzy_poll_rate: float = 20.0
    uppzy_answer_timeout: float = 120.0
    uppzy_send_email: bool = False
    slack_bot_token: Secret | None = None
    slack_app_token: Secret | None = None
    slack_signing_secret: Secret | None = None
    slack_api_base_url: str = "https://slack.com/api/"
    slack_admin_user_ids: frozenset[str] = field(default_factory=frozenset)
    discord_bot_token: Secret | None = None
    discord_api_base_url: str = "https://discord.com/api/v10"
    discord_gateway_url: str = "wss://gateway.discord.gg/"
    discord_guild_ids: tuple[int, ...] = ()
    database_url: str = "sqlite:///uppzy-bot.db"
    session_idle_timeout: float = 1800.0
    session_close_rate: float = 5.0
    port: int = 3000
    log_level: str = "INFO"
    log_format: str = "text"

    @property
    def database_path(self) -> str:
        """The SQLite file named by DATABASE_URL (':memory:' allowed)."""
        return _sqlite_path(self.database_url)

    def secrets(self) -> list[str]:
        """Every secret value, for the log redaction filter."""
        return [f.reveal() for f in (getattr(self, x.name) for x in fields(self)) if isinstance(f, Secret) and f]

    def require(self, *variables: str) -> None:
        """Stop start-up with one clear line when a variable a command needs is not set."""
        for variable in variables:
            if not getattr(self, variable.lower()):
                raise ConfigError(variable, "is required for this command but is not set (see .env.example)")


def _sqlite_path(url: str) -> str:
    if not url.startswith("sqlite:///"):
        raise ValueError("only SQLite is supported for now: use sqlite:///path/to/file.db")
    path = url[len("sqlite:///"):]
    if not path:
        raise ValueError("names no file: use sqlite:///uppzy-bot.db or sqlite:////abs/path.db")
    return path if path == ":memory:" else str(Path(path))


def _url(value: str, schemes: tuple[str, ...]) -> str:
    if not value.startswith(schemes) or len(value) <= len(value.split("://")[0]) + 3:
        raise ValueError(f"must be a URL starting with {' or '.join(schemes)}")
    return value


def _number(value: str, kind: type[int] | type[float]) -> float:
    try:
        return kind(value.strip())
    except ValueError:
        raise ValueError("must be a whole number" if kind is int else "must be a number") from None


def _positive_float(value: str) -> float:
    number = _number(value, float)
    if number <= 0:
        raise ValueError("must be greater than zero")
    return number


def _positive_int(value: str) -> int:
    number = int(_number(value, int))
    if number <= 0:
        raise ValueError("must be a whole number greater than zero")
    return number


def _port(value: str) -> int:
    number = int(_number(value, int))
    if not 0 <= number <= 65535:
        raise ValueError("must be a port number from 0 to 65535")
    return number


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError("must be true or false")


def _choice(*allowed: str):
    def parse(value: str) -> str:
        if value.lower() not in allowed:
            raise ValueError(f"must be one of: {', '.join(allowed)}")
        return value.lower()

    return parse


def _id_set(value: str) -> frozenset[str]:
    return frozenset(part.strip() for part in value.replace(";", ",").split(",") if part.strip())


def _int_ids(value: str) -> tuple[int, ...]:
    parts = [part.strip() for part in value.replace(";", ",").split(",") if part.strip()]
    try:
        return tuple(dict.fromkeys(int(v) for v in parts))  # as written, duplicates dropped (a set loses the order)
    except ValueError:
        raise ValueError("must be a comma-separated list of numeric server ids") from None


def _plain(value: str) -> str:
    return value.strip()


def _secret(value: str) -> Secret:
    return Secret(value.strip())


_PARSERS = {
    "UPPZY_API_KEY": _secret,
    "UPPZY_SITE_ID": _plain,
    "UPPZY_BASE_URL": lambda v: _url(v.strip().rstrip("/"), ("http://", "https://")),
    "UPPZY_TENANT_ID": _plain,
    "UPPZY_CONNECT_TIMEOUT": parse_duration,
    "UPPZY_TIMEOUT": parse_duration,
    "UPPZY_CHAT_TIMEOUT": parse_duration,
    "UPPZY_MAX_ATTEMPTS": _positive_int,
    "UPPZY_RETRY_BUDGET": parse_duration,
    "UPPZY_POLL_RATE": _positive_float,
    "UPPZY_ANSWER_TIMEOUT": parse_duration,
    "UPPZY_SEND_EMAIL": _bool,
    "SLACK_BOT_TOKEN": _secret,
    "SLACK_APP_TOKEN": _secret,
    "SLACK_SIGNING_SECRET": _secret,
    "SLACK_API_BASE_URL": lambda v: _url(v.strip().rstrip("/") + "/", ("http://", "https://")),
    "SLACK_ADMIN_USER_IDS": _id_set,
    "DISCORD_BOT_TOKEN": _secret,
    "DISCORD_API_BASE_URL": lambda v: _url(v.strip().rstrip("/"), ("http://", "https://")),
    "DISCORD_GATEWAY_URL": lambda v: _url(v.strip(), ("ws://", "wss://")),
    "DISCORD_GUILD_IDS": _int_ids,
    "DATABASE_URL": lambda v: (_sqlite_path(v.strip()), v.strip())[1],
    "SESSION_IDLE_TIMEOUT": parse_duration,
    "SESSION_CLOSE_RATE": _positive_float,
    "PORT": _port,
    "LOG_LEVEL": lambda v: _choice("debug", "info", "warning", "error", "critical")(v).upper(),
    "LOG_FORMAT": _choice("text", "json"),
}


def load_settings(env: Mapping[str, str]) -> Settings:
    """Build Settings from an environment mapping; a bad value raises ConfigError naming the variable."""
    values: dict[str, object] = {}
    for variable, parse in _PARSERS.items():
        raw = env.get(variable)
        if raw is None or raw.strip() == "":
            continue
        try:
            values[variable.lower()] = parse(raw)
        except ValueError as exc:
            shown = "(hidden)" if parse is _secret else repr(raw.strip()[:60])
            raise ConfigError(variable, f"invalid value {shown}: {exc}") from None
    return Settings(**values)  # type: ignore[arg-type]
