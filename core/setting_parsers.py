"""The value parsers every setting shares (environment variables and per-workspace keys): one clear line for a bad
value, naming what is accepted."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "CHANNEL_MODES",
    "DAY",
    "DEFAULT_SUGGESTED_PROMPTS",
    "GENERATE_FERNET_KEY",
    "HTTP",
    "MAX_PROMPTS",
    "POSTGRES_SCHEMES",
    "PROMPTS_ACCEPTED",
    "PROMPT_CHARS",
    "RATERS",
    "SESSION_STRATEGIES",
    "WEBSOCKET",
    "Parser",
    "SettingError",
    "choice",
    "credential",
    "database_url",
    "emoji_list",
    "fernet_keys",
    "id_set",
    "int_ids",
    "normalize_emoji",
    "number",
    "parse_bool",
    "parse_duration",
    "parse_port",
    "parse_site_id",
    "plain",
    "positive_float",
    "positive_int",
    "postgres_url",
    "prompt_list",
    "refine",
    "shard_ids",
    "sqlite_path",
    "tag_name",
    "target",
    "text",
    "url",
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
