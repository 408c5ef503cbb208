"""Typed settings read once at the entry point, so nothing else ever touches os.environ."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from core.setting_parsers import GENERATE_FERNET_KEY, POSTGRES_SCHEMES, parse_duration, sqlite_path
from core.setting_specs import ENV_SPECS

__all__ = ["ConfigError", "Secret", "Settings", "load_settings", "parse_duration", "shown_url"]


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
    uppzy_poll_rate: float = 100.0  # a ceiling: the budget starts lower and learns Uppzy's limit below it
    uppzy_answer_timeout: float = 120.0
    uppzy_answer_max_chars: int = 12000
    uppzy_send_email: bool = False
    slack_bot_token: Secret | None = None
    slack_app_token: Secret | None = None
    slack_signing_secret: Secret | None = None
    slack_client_id: str | None = None
    slack_client_secret: Secret | None = None
    slack_redirect_uri: str | None = None
    slack_api_base_url: str = "https://slack.com/api/"
    slack_admin_user_ids: frozenset[str] = field(default_factory=frozenset)
    discord_bot_token: Secret | None = None
    discord_api_base_url: str = "https://discord.com/api/v10"
    discord_gateway_url: str = "wss://gateway.discord.gg/"
    discord_guild_ids: tuple[int, ...] = ()
    discord_shard_count: int | None = None
    discord_shard_ids: tuple[int, ...] = ()
    database_url: str = "sqlite:///uppzy-bot.db"
    secrets_key: Secret | None = None  # SECRETS_KEY, normalised "key1,key2": seals tokens and keys at rest
    database_pool_min: int = 1
    database_pool_max: int = 10
    replica_lease: float = 10.0
    session_idle_timeout: float = 1800.0
    session_close_rate: float = 5.0
    metrics_workspace_labels: int = 100
    port: int = 3000
    log_level: str = "INFO"
    log_format: str = "text"

    @property
    def uses_postgres(self) -> bool:
        """DATABASE_URL names PostgreSQL (several replicas may share it)."""
        return self.database_url.startswith(POSTGRES_SCHEMES)

    @property
    def database_path(self) -> str:
        """The SQLite file named by DATABASE_URL (':memory:' allowed)."""
        return sqlite_path(self.database_url)

    @property
    def slack_oauth(self) -> bool:
        """Slack "Add to Slack" distribution: client id and secret set, and no SLACK_BOT_TOKEN (which would win)."""
        return bool(self.slack_client_id and self.slack_client_secret and not self.slack_bot_token)

    @property
    def slack_mode_conflict(self) -> str | None:
        """The line to log when both SLACK_BOT_TOKEN and the OAuth client settings are set (the token wins)."""
        if self.slack_bot_token and (self.slack_client_id or self.slack_client_secret):
            return ("SLACK_BOT_TOKEN is set, so Slack runs single-workspace and SLACK_CLIENT_ID/SLACK_CLIENT_SECRET "
                    "are ignored; unset SLACK_BOT_TOKEN to serve many workspaces through \"Add to Slack\"")
        return None

    def check_slack_oauth(self) -> None:
        """What OAuth distribution needs beside the client id and secret: one ConfigError line naming the first gap."""
        if self.slack_bot_token:
            return
        if bool(self.slack_client_id) != bool(self.slack_client_secret):
            missing = "SLACK_CLIENT_SECRET" if self.slack_client_id else "SLACK_CLIENT_ID"
            raise ConfigError(missing, "is required with the other one for \"Add to Slack\" distribution; copy it "
                                       "from the app's Basic Information page (or unset both)")
        if not self.slack_oauth:
            return
        if self.slack_app_token:
            raise ConfigError("SLACK_APP_TOKEN", "\"Add to Slack\" distribution runs in HTTP mode: unset "
                                                 "SLACK_APP_TOKEN (Socket Mode serves a single workspace)")
        if not self.slack_signing_secret:
            raise ConfigError("SLACK_SIGNING_SECRET", "is required for \"Add to Slack\" distribution (HTTP mode); "
                                                      "copy it from the app's Basic Information page")
        if not self.secrets_key:
            raise ConfigError("SECRETS_KEY", "is required for \"Add to Slack\" distribution: each workspace's bot "
                                             "token is stored encrypted with it; generate one with: "
                                             + GENERATE_FERNET_KEY)

    def secrets(self) -> list[str]:
        """Every secret value, for the log redaction filter (each SECRETS_KEY key on its own as well)."""
        values = [f.reveal() for f in (getattr(self, x.name) for x in fields(self)) if isinstance(f, Secret) and f]
        if self.secrets_key:
            values += self.secrets_key.reveal().split(",")
        return values

    def require(self, *variables: str) -> None:
        """Stop start-up with one clear line when a variable a command needs is not set."""
        for variable in variables:
            if not getattr(self, variable.lower()):
                raise ConfigError(variable, "is required for this command but is not set (see .env.example)")


    def check_discord_shards(self) -> None:
        """The cross-field rules of DISCORD_SHARD_IDS: it needs DISCORD_SHARD_COUNT, and each id is below it."""
        ids, count = self.discord_shard_ids, self.discord_shard_count
        if ids and count is None:
            raise ConfigError("DISCORD_SHARD_IDS", "needs DISCORD_SHARD_COUNT, the total number of shards (the same "
                                                   "on every replica)")
        too_big = [i for i in ids if count is not None and i >= count]
        if too_big:
            raise ConfigError("DISCORD_SHARD_IDS", f"shard {too_big[0]} does not exist with DISCORD_SHARD_COUNT="
                                                   f"{count}: shard ids run from 0 to {count - 1}")


def load_settings(env: Mapping[str, str]) -> Settings:
    """Build Settings from an environment mapping; a bad value raises ConfigError naming the variable."""
    values: dict[str, object] = {}
    for spec in ENV_SPECS:
        raw = env.get(spec.name)
        if raw is None or raw.strip() == "":
            continue
        try:
            value = spec.parse(raw)
        except ValueError as exc:
            plain_raw = shown_url(raw.strip()) if "://" in raw else raw.strip()  # never a URL's password
            shown = "(hidden)" if spec.secret else repr(plain_raw[:60])
            raise ConfigError(spec.name, f"invalid value {shown}: {exc}") from None
        values[spec.field] = Secret(value) if spec.secret else value
    return Settings(**values)  # type: ignore[arg-type]


def shown_url(url: str) -> str:
    """A setting's URL as it may be printed or logged: a user:password and every query value become ***."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            netloc = "***@" + netloc.rsplit("@", 1)[1]
        query = urlencode([(k, "***") for k, _ in parse_qsl(parts.query, keep_blank_values=True)], safe="*")
        return urlunsplit((parts.scheme, netloc, parts.path, query, ""))
    except ValueError:
        return "(a malformed URL)"
