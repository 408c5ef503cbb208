"""Log redaction: configured secrets and anything shaped like a token never reach a log line."""

from __future__ import annotations

import io
import json
import logging
import random
import sys
from collections.abc import Iterator

import pytest

from core.redaction import MASK, JsonFormatter, RedactingFilter, configure_logging, redact, register_secret

KEY = "sk-live-SECRET-1234567890"
SLACK_BOT = "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"
SLACK_APP = "xapp-1-A0123456789-1234567890123-0123456789abcdef0123456789abcdef"
DISCORD_19_DIGIT_ID = "MTIzNDU2Nzg5MDEyMzQ1Njc4OQ.GhIjKl.abcdefghijklmnopqrstuvwxyzABCDEFGHIJKL"
DISCORD_18_DIGIT_ID = "ODEyMzQ1Njc4OTAxMjM0NTY3.YAbcDe.abcdefghijklmnopqrstuvwxyzA"
DISCORD_17_DIGIT_ID = "ODEyMzQ1Njc4OTAxMjM0NTY.YAbcDe.abcdefghijklmnopqrstuvwxyzA"
TOKENS = [SLACK_BOT, SLACK_APP, DISCORD_19_DIGIT_ID, DISCORD_18_DIGIT_ID, DISCORD_17_DIGIT_ID]


@pytest.fixture
def logger() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A private logger whose one handler redacts (configured with KEY) and writes to a buffer."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter([KEY]))
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    log = logging.getLogger("test_redaction.private")
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    log.propagate = False
    yield log, stream
    log.removeHandler(handler)


@pytest.mark.parametrize("token", TOKENS)
def test_redact_blanks_token_shapes(token: str) -> None:
    """Slack bot/app tokens and Discord bot tokens are masked even when nobody configured them."""
    assert redact(f"token is {token}, ok") == f"token is {MASK}, ok"


def test_redact_blanks_configured_secrets_and_auth_headers() -> None:
    """Configured secrets and X-API-Key / Authorization header values are masked."""
    assert redact(f"key {KEY}!", [KEY]) == f"key {MASK}!"
    assert KEY not in redact(f"{{'X-API-Key': '{KEY}'}}")
    assert redact("Authorization: Bearer abc.def") == f"Authorization: {MASK}"
    assert redact("authorization=Bot abcdef") == f"authorization={MASK}"


def test_redact_leaves_ordinary_text_alone() -> None:
    """Text without secrets comes back unchanged (ids, urls, short words)."""
    text = "uppzy chat_status status=200 request_id=req_0123456789abcdef url=http://127.0.0.1:8787/api/v1"
    assert redact(text, [KEY, ""]) == text


def test_filter_blanks_secrets_in_message_and_args(logger: tuple[logging.Logger, io.StringIO]) -> None:
    """A secret or token in the message or in its %-args is masked in the emitted line."""
    log, stream = logger
    log.info("key=%s bot=%s", KEY, SLACK_BOT)
    log.warning(f"inline {KEY} and {DISCORD_19_DIGIT_ID}")
    out = stream.getvalue()
    assert KEY not in out and SLACK_BOT not in out and DISCORD_19_DIGIT_ID not in out
    assert out.count(MASK) == 4


def test_filter_blanks_secrets_in_tracebacks(logger: tuple[logging.Logger, io.StringIO]) -> None:
    """A secret inside an exception's text is masked in the logged traceback (exc_text)."""
    log, stream = logger
    try:
        raise RuntimeError(f"connect failed with key {KEY} and {SLACK_APP}")
    except RuntimeError:
        log.exception("call failed")
    out = stream.getvalue()
    assert "Traceback" in out and "RuntimeError" in out
    assert KEY not in out and SLACK_APP not in out and MASK in out


def test_filter_blanks_secrets_in_stack_info(logger: tuple[logging.Logger, io.StringIO]) -> None:
    """stack_info text is redacted as well."""
    log, stream = logger
    log.info("with stack %s", KEY, stack_info=True)
    assert KEY not in stream.getvalue() and "Stack (most recent call last)" in stream.getvalue()


def test_filter_blanks_secrets_in_extra_fields() -> None:
    """Secrets passed through `extra` are masked before a JSON formatter prints them."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter([KEY]))
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("test_redaction.extra")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("retrying", extra={"caused_by": f"Error({KEY!r})", "details": {"token": SLACK_BOT},
                                       "attempt": 2})
    finally:
        log.removeHandler(handler)
    data = json.loads(stream.getvalue())
    assert KEY not in stream.getvalue() and SLACK_BOT not in stream.getvalue()
    assert data["attempt"] == 2 and MASK in data["caused_by"]


def test_filter_keeps_records_and_levels() -> None:
    """The filter never drops a record: it only rewrites its text."""
    record = logging.makeLogRecord({"msg": "hello %s", "args": ("world",), "levelno": logging.INFO})
    assert RedactingFilter([KEY]).filter(record) is True
    assert record.getMessage() == "hello world"


def test_json_formatter_is_one_line_with_extra_fields() -> None:
    """JsonFormatter writes one JSON object per line with ts, level, logger, msg and the extra fields."""
    record = logging.getLogger("core.uppzy").makeRecord(
        "core.uppzy", logging.WARNING, __file__, 1, "uppzy %s failed\nsecond line", ("chat",), None,
        extra={"endpoint": "chat", "status": 503, "request_id": "req_1", "latency_ms": 12.5},
    )
    line = JsonFormatter().format(record)
    assert "\n" not in line
    data = json.loads(line)
    assert data["level"] == "WARNING" and data["logger"] == "core.uppzy"
    assert data["msg"] == "uppzy chat failed\nsecond line"
    assert (data["endpoint"], data["status"], data["request_id"], data["latency_ms"]) == ("chat", 503, "req_1", 12.5)
    assert "ts" in data and "args" not in data and "msecs" not in data


def test_json_formatter_includes_the_traceback() -> None:
    """A logged exception appears as one 'exc' string field, still on one line."""
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.makeLogRecord({"msg": "failed", "levelno": logging.ERROR, "levelname": "ERROR",
                                        "exc_info": sys.exc_info()})
    line = JsonFormatter().format(record)
    assert "\n" not in line and "ValueError: boom" in json.loads(line)["exc"]


@pytest.fixture
def restore_root_logging() -> Iterator[None]:
    """Put the root logger (pytest's capture handlers included) and quietened loggers back after the test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    noisy = {name: logging.getLogger(name).level for name in ("httpx", "httpcore", "stamina", "aiohttp.access")}
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    for name, old in noisy.items():
        logging.getLogger(name).setLevel(old)


def test_configure_logging_redacts_every_logger(
    restore_root_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """After configure_logging, a library logging a configured secret or a token prints it masked, as JSON."""
    configure_logging("DEBUG", "json", [KEY])
    logging.getLogger("some.library").warning("sending key %s with %s", KEY, SLACK_BOT)
    err = capsys.readouterr().err
    assert KEY not in err and SLACK_BOT not in err
    [line] = err.strip().splitlines()
    assert json.loads(line)["msg"] == f"sending key {MASK} with {MASK}"
    assert logging.getLogger("httpx").level >= logging.WARNING


# ---- issue 12: every Slack token shape, Fernet tokens, secrets registered at run time ----------------------------

SLACK_USER = "xoxp-123456789012-1234567890123-1234567890123-0123456789abcdef0123456789abcdef"
SLACK_REFRESH = "xoxe-1-My0xLTIxMjM0NTY3ODktMTIzNDU2Nzg5LTEyMzQ1Njc4OS1hYmNkZWYwMTIzNDU2Nzg5"
SLACK_ROTATING_BOT = "xoxe.xoxb-1-MS0yLTEyMzQ1Njc4OTAxMi0xMjM0NTY3ODkwMTIzLUFiQ2RFZkdoSWpLbA"
SLACK_CONFIG = "xoxe.xoxp-1-Mi0yLTEyMzQ1Njc4OTAxMi0xMjM0NTY3ODkwMTIzLTEyMzQ1Njc4OTAxMjM"
FERNET_TOKEN = ("gAAAAABnR2x4W9bQ0c3Vb_8v1mHkZ0xOaJ2m3kq-7aVbQq1nPz2s5uWgYk8J4rB6dT0eLwX9yC3fA1hG7iK2oM5nS8pU0vR4tQ6"
                "x_zE3aD5cF7==")


@pytest.mark.parametrize("token", [SLACK_USER, SLACK_REFRESH, SLACK_ROTATING_BOT, SLACK_CONFIG, FERNET_TOKEN])
def test_redact_blanks_refresh_user_config_and_fernet_tokens(token: str) -> None:
    """User (xoxp-), refresh (xoxe-1-), rotating bot/config (xoxe.xoxb-, xoxe.xoxp-) and Fernet (gAAAAA…) tokens are
    blanked whole, in text and in a dict's repr."""
    assert redact(f"token is {token}, ok") == f"token is {MASK}, ok"
    assert redact(repr({"value": token})) == repr({"value": MASK})


def test_redact_blanks_token_fields_of_any_shape() -> None:
    """An access_token, refresh_token or client_secret field is blanked whatever its value looks like."""
    text = redact("{'access_token': 'abc123xyz', \"refresh_token\": \"r-42\", 'client_secret': 'c0ffee'}")
    assert "abc123xyz" not in text and "r-42" not in text and "c0ffee" not in text and text.count(MASK) == 3
    line = "SLACK_BOT_TOKEN: Slack refused the bot token; UPPZY_API_KEY: is required"  # setting names: no values
    assert redact(line) == line


def test_a_registered_secret_is_blanked_by_the_filter_from_then_on(logger: tuple[logging.Logger, io.StringIO]) -> None:
    """register_secret: a value opened from the database at run time (a workspace's Uppzy key, of no known shape)
    is blanked in later log lines, message, args and tracebacks alike; ones under 4 characters are ignored."""
    log, stream = logger
    workspace_key = "uk-workspace-7f3a9c2e51d04b6a"
    log.info("before %s", workspace_key)
    assert workspace_key in stream.getvalue()  # nothing blanks it yet: the test would pass vacuously otherwise
    register_secret(workspace_key)
    register_secret("abc")
    register_secret("")
    try:
        raise RuntimeError(f"Uppzy refused key {workspace_key}")
    except RuntimeError:
        log.exception("connect check failed for %s", workspace_key)
    log.info("abc stays")
    after = stream.getvalue().split("before", 1)[1].split("\n", 1)[1]
    assert workspace_key not in after and after.count(MASK) == 2 and "abc stays" in after
    assert redact(f"plain {workspace_key}") == f"plain {MASK}"


def test_thousands_of_registered_secrets_are_all_blanked(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past a few hundred registered secrets (a key per workspace) a line is scanned once instead of one replace per
    secret: every one is still blanked, wherever it stands, the longest when two begin alike, and a line with none
    comes back as it was. Compared with the replace-each way on 300 random lines."""
    from core import redaction

    monkeypatch.setattr(redaction, "_registered", set())
    monkeypatch.setattr(redaction, "_in_order", ())
    monkeypatch.setattr(redaction, "_by_head", {})
    rng = random.Random(5)
    keys = [f"uk-{rng.randrange(16**6):06x}-{rng.randrange(16**12):012x}"[: rng.randrange(12, 24)] for _ in range(3000)]
    keys += ["same-head-key-1", "same-head-key-1-longer"]  # one a prefix of the other
    for key in keys:
        register_secret(key)
    assert redaction._in_order == ()  # the scanning path is the one under test
    a, b = keys[7], keys[2999]
    assert redact(f"{a} at the start, {b} inside, and at the end {a}") == \
        f"{MASK} at the start, {MASK} inside, and at the end {MASK}"
    assert redact(f"https://x/?key={a}&next={b}{a}") == f"https://x/?key={MASK}&next={MASK}{MASK}"
    assert redact("use same-head-key-1-longer or same-head-key-1.") == f"use {MASK} or {MASK}."
    assert redact("nothing secret here, uk-0 is too short") == "nothing secret here, uk-0 is too short"
    by_length = sorted(set(keys), key=len, reverse=True)
    for _ in range(300):
        line = " ".join(rng.choice(keys) if rng.random() < 0.3 else f"word{rng.randrange(99)}" for _ in range(12))
        expected = line
        for key in by_length:
            expected = expected.replace(key, MASK)
        assert redact(line) == expected, line


@pytest.mark.filterwarnings("ignore:BasicAuth is deprecated:DeprecationWarning")
async def test_slack_sdk_debug_log_of_an_oauth_exchange_shows_no_token(
    restore_root_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """The real slack_sdk client at DEBUG, exchanging a code with oauth.v2.access on a local server: its 'Received
    the following response' line (bot, user and refresh tokens) and its request line reach stderr without a token."""
    from aiohttp import web
    from slack_sdk.web.async_client import AsyncWebClient

    body = {"ok": True, "access_token": SLACK_ROTATING_BOT, "refresh_token": SLACK_REFRESH, "expires_in": 43200,
            "token_type": "bot", "team": {"id": "T1"}, "authed_user": {"id": "U1", "access_token": SLACK_USER,
                                                                         "refresh_token": SLACK_REFRESH}}

    async def oauth(request: web.Request) -> web.Response:
        return web.json_response(body)

    app = web.Application()
    app.router.add_post("/api/oauth.v2.access", oauth)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    client_secret = "0123456789abcdef0123456789abcdef"
    configure_logging("DEBUG", "text", [client_secret])
    try:
        client = AsyncWebClient(base_url=f"http://127.0.0.1:{port}/api/")
        response = await client.oauth_v2_access(client_id="1.2", client_secret=client_secret, code="the-code")
        assert response["access_token"] == SLACK_ROTATING_BOT
    finally:
        await runner.cleanup()
    err = capsys.readouterr().err
    assert "Received the following response" in err and "oauth.v2.access" in err
    for secret in (SLACK_ROTATING_BOT, SLACK_REFRESH, SLACK_USER, client_secret):
        assert secret not in err
    assert SLACK_REFRESH[:12] not in err and "xoxe" not in err
