"""Log setup with a filter on every handler that blanks keys and tokens, whatever a library logs."""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
from collections.abc import Iterable

__all__ = ["JsonFormatter", "RedactingFilter", "configure_logging", "redact", "register_secret"]

# Shapes of Slack and Discord credentials, caught even when they were never configured here.
_TOKEN_SHAPES = re.compile(
    # Slack: bot, user, app-level, legacy and config tokens (xoxb-, xoxp-, xoxa-, xoxe.xoxp-…), refresh tokens
    # (xoxe-1-…, xoxe.xoxb-…) and app tokens (xapp-1-…).
    r"(xox[a-z](?:\.xox[a-z])?-[0-9A-Za-z_-]{6,}|xapp-\d-[0-9A-Za-z-]{6,}"
    # Discord: base64 of a 17-19 digit user id (23-26 chars; starts M, N or O), a 6-char timestamp, an HMAC.
    r"|[MNO][A-Za-z0-9_-]{22,25}\.[A-Za-z0-9_-]{6}\.[A-Za-z0-9_-]{27,}"
    # Fernet tokens (SECRETS_KEY's sealed values): version byte 0x80 and a 64-bit timestamp, url-safe base64.
    r"|gAAAAA[0-9A-Za-z_-]{50,}={0,2})"
)
_HEADER_SHAPES = re.compile(
    r"(?i)((?<![\w-])(?:x-api-key|authorization|client_secret|access_token|refresh_token|bot_token|user_token|api_key)"
    r"['\"]?\s*[:=]\s*['\"]?)(?:bot |bearer )?[^\s'\",}]+"
)
MASK = "[REDACTED]"
_STANDARD_ATTRS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
_HEAD = 4  # secrets are at least this long; registered ones are found by their first characters
_REPLACE_UP_TO = 256  # up to this many registered secrets, one str.replace each is faster than scanning the line
_registered: set[str] = set()  # secrets read at run time (register_secret)
_in_order: tuple[str, ...] = ()  # the same, longest first, while there are at most _REPLACE_UP_TO
_by_head: dict[str, tuple[str, ...]] = {}  # the same by their first _HEAD characters, longest first
_registering = threading.Lock()


def register_secret(value: str) -> None:
    """Blank `value` in every log line from now on, like a configured secret: for secrets opened at run time (a
    workspace's Uppzy key, an installed team's token). Values shorter than 4 characters are ignored."""
    global _in_order
    if not value or len(value) < _HEAD or value in _registered:
        return
    with _registering:
        if value in _registered:
            return
        head = value[:_HEAD]
        _by_head[head] = tuple(sorted((*_by_head.get(head, ()), value), key=len, reverse=True))
        _registered.add(value)
        _in_order = tuple(sorted(_registered, key=len, reverse=True)) if len(_registered) <= _REPLACE_UP_TO else ()


def _blank_registered(text: str) -> str:
    """Every registered secret in `text` blanked. With thousands registered (a workspace's key each), the line is
    scanned once and each place looked up by its first characters: one replace per secret cost 0.7 ms a line at
    10,000 secrets."""
    in_order = _in_order
    if in_order or not _registered:
        for secret in in_order:
            text = text.replace(secret, MASK)
        return text
    heads, parts, start, at, end = _by_head, [], 0, 0, len(text) - _HEAD
    while at <= end:
        for secret in heads.get(text[at:at + _HEAD], ()):  # longest first
            if text.startswith(secret, at):
                parts += [text[start:at], MASK]
                at = start = at + len(secret)
                break
        else:
            at += 1
    return "".join([*parts, text[start:]]) if parts else text


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Replace every known secret (given, or registered) and anything shaped like a token or auth header value."""
    for secret in secrets:
        if secret and len(secret) >= _HEAD:
            text = text.replace(secret, MASK)
    text = _blank_registered(text)
    text = _TOKEN_SHAPES.sub(MASK, text)
    return _HEADER_SHAPES.sub(lambda m: m.group(1) + MASK, text)


class RedactingFilter(logging.Filter):
    """Rewrites each record's final text (and traceback) with secrets blanked, before any handler emits it."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        cleaned = redact(message, self.secrets)
        record.msg, record.args = cleaned, None
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self.secrets)
        if record.stack_info:
            record.stack_info = redact(record.stack_info, self.secrets)
        for name, value in list(vars(record).items()):  # `extra` fields, which JsonFormatter prints as they are
            if name in _STANDARD_ATTRS or isinstance(value, int | float | bool | type(None)):
                continue
            shown = value if isinstance(value, str) else repr(value)
            cleaned = redact(shown, self.secrets)
            if cleaned != shown:
                setattr(record, name, cleaned)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line, carrying the ids code passed in `extra`."""

    _STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        data = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        data.update({k: v for k, v in vars(record).items() if k not in self._STANDARD and not k.startswith("_")})
        if record.exc_text or record.exc_info:
            data["exc"] = record.exc_text or self.formatException(record.exc_info)  # type: ignore[arg-type]
        return json.dumps(data, default=str)


def configure_logging(level: str = "INFO", fmt: str = "text", secrets: Iterable[str] = ()) -> None:
    """Called once by the entry point: one stderr handler, redaction on it, chatty libraries quietened."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter(secrets))
    handler.setFormatter(
        JsonFormatter() if fmt == "json" else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("httpx", "httpcore", "aiohttp.access", "websockets", "discord.gateway", "stamina"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
