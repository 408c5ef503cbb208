"""Settings: defaults, parsing, one-line errors naming the variable, and secrets that never show."""

from __future__ import annotations

import pytest

from core.config import ConfigError, Secret, Settings, load_settings, parse_duration

KEY = "sk-live-SECRET-1234567890"
SLACK_BOT = "xoxb-1111-2222-SECRETslack"
DISCORD = "MTIzNDU2Nzg5MDEyMzQ1Njc4OQ.GabcDE.SECRETdiscordSECRETdiscordSECRETdis"


def test_defaults_when_nothing_is_set() -> None:
    """An empty environment gives the documented defaults and no secrets."""
    settings = load_settings({})
    assert settings.session_idle_timeout == 1800.0
    assert settings.port == 3000
    assert settings.uppzy_base_url == "https://api.uppzy.com/api/v1"
    assert settings.slack_api_base_url == "https://slack.com/api/"
    assert settings.discord_api_base_url == "https://discord.com/api/v10"
    assert settings.discord_gateway_url == "wss://gateway.discord.gg/"
    assert settings.database_url == "sqlite:///uppzy-bot.db"
    assert settings.database_path == "uppzy-bot.db"
    assert settings.log_level == "INFO"
    assert settings.log_format == "text"
    assert settings.uppzy_api_key is None
    assert settings.slack_admin_user_ids == frozenset()
    assert settings.discord_guild_ids == ()
    assert settings.secrets() == []


def test_blank_values_fall_back_to_defaults() -> None:
    """A variable set to whitespace counts as unset rather than as a malformed value."""
    settings = load_settings({"PORT": "  ", "SESSION_IDLE_TIMEOUT": ""})
    assert settings.port == 3000
    assert settings.session_idle_timeout == 1800.0


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("45s", 45.0), ("30m", 1800.0), ("2h", 7200.0), ("1d", 86400.0), ("90", 90.0), ("250ms", 0.25),
     ("1.5s", 1.5), (" 10 M ", 600.0)],
)
def test_parse_duration_units(text: str, seconds: float) -> None:
    """Durations accept s, m, h, d, ms or bare seconds (case and spaces ignored)."""
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["soon", "", "0", "0s", "-5s", "5 minutes", "5x", "1e3"])
def test_parse_duration_rejects_junk_and_zero(text: str) -> None:
    """Anything but a positive number with a known unit is a ValueError."""
    with pytest.raises(ValueError):
        parse_duration(text)


def test_durations_and_numbers_from_env() -> None:
    """Duration variables are read in seconds and numeric variables as numbers."""
    settings = load_settings({
        "SESSION_IDLE_TIMEOUT": "45s", "UPPZY_TIMEOUT": "250ms", "UPPZY_CHAT_TIMEOUT": "2h",
        "UPPZY_RETRY_BUDGET": "30", "UPPZY_MAX_ATTEMPTS": "3", "UPPZY_POLL_RATE": "2.5", "PORT": "8080",
    })
    assert settings.session_idle_timeout == 45.0
    assert settings.uppzy_timeout == 0.25
    assert settings.uppzy_chat_timeout == 7200.0
    assert settings.uppzy_retry_budget == 30.0
    assert settings.uppzy_max_attempts == 3
    assert settings.uppzy_poll_rate == 2.5
    assert settings.port == 8080


def test_values_are_normalised() -> None:
    """URLs lose or gain their trailing slash as the clients expect, and choices are case-insensitive."""
    settings = load_settings({
        "UPPZY_BASE_URL": "http://127.0.0.1:8787/api/v1/", "SLACK_API_BASE_URL": "http://localhost:9000/api",
        "LOG_LEVEL": "debug", "LOG_FORMAT": "JSON", "UPPZY_SEND_EMAIL": "Yes",
        "DATABASE_URL": "sqlite:///:memory:",
    })
    assert settings.uppzy_base_url == "http://127.0.0.1:8787/api/v1"
    assert settings.slack_api_base_url == "http://localhost:9000/api/"
    assert settings.log_level == "DEBUG"
    assert settings.log_format == "json"
    assert settings.uppzy_send_email is True
    assert settings.database_path == ":memory:"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PORT", "abc"),
        ("PORT", "70000"),
        ("SESSION_IDLE_TIMEOUT", "soon"),
        ("UPPZY_BASE_URL", "ftp://x"),
        ("UPPZY_BASE_URL", "https://"),
        ("DATABASE_URL", "postgres://"),
        ("DATABASE_URL", "sqlite:///"),
        ("LOG_LEVEL", "verbose"),
        ("LOG_FORMAT", "xml"),
        ("UPPZY_SEND_EMAIL", "maybe"),
        ("UPPZY_MAX_ATTEMPTS", "0"),
        ("UPPZY_MAX_ATTEMPTS", "2.5"),
        ("UPPZY_POLL_RATE", "-1"),
        ("DISCORD_GATEWAY_URL", "https://gateway.discord.gg"),
        ("DISCORD_GUILD_IDS", "123,abc"),
    ],
)
def test_malformed_value_raises_one_line_config_error_naming_the_variable(variable: str, value: str) -> None:
    """A malformed value raises ConfigError whose text is one line starting with the variable name."""
    with pytest.raises(ConfigError) as info:
        load_settings({variable: value})
    text = str(info.value)
    assert text.startswith(f"{variable}: ")
    assert "\n" not in text
    assert info.value.variable == variable
    assert isinstance(info.value, ValueError)
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__


def test_config_error_quotes_value_with_newline_on_one_line() -> None:
    """Even a value containing a newline is shown escaped, keeping the error on one line."""
    with pytest.raises(ConfigError) as info:
        load_settings({"PORT": "80\n80"})
    assert "\n" not in str(info.value)


def test_secrets_never_appear_in_repr_or_str() -> None:
    """repr and str of Settings and of each Secret show a mask, never the key or tokens."""
    settings = load_settings({"UPPZY_API_KEY": KEY, "SLACK_BOT_TOKEN": SLACK_BOT, "DISCORD_BOT_TOKEN": DISCORD,
                              "SLACK_APP_TOKEN": "xapp-1-A1-SECRETapp", "SLACK_SIGNING_SECRET": "SECRETsigning"})
    shown = repr(settings) + str(settings) + f"{settings.uppzy_api_key}" + repr(settings.discord_bot_token)
    for secret in (KEY, SLACK_BOT, DISCORD, "SECRETapp", "SECRETsigning"):
        assert secret not in shown
    assert "**********" in shown
    assert settings.uppzy_api_key == Secret(KEY)
    assert settings.uppzy_api_key is not None and settings.uppzy_api_key.reveal() == KEY


def test_secrets_lists_every_configured_secret_for_redaction() -> None:
    """Settings.secrets() returns each configured secret value (and only those) for the log filter."""
    settings = load_settings({"UPPZY_API_KEY": f"  {KEY}  ", "DISCORD_BOT_TOKEN": DISCORD, "UPPZY_SITE_ID": "s"})
    assert sorted(settings.secrets()) == sorted([KEY, DISCORD])


def test_config_error_about_another_variable_does_not_reveal_secrets() -> None:
    """When a setting next to a secret is malformed, the error text names only that setting's value."""
    with pytest.raises(ConfigError) as info:
        load_settings({"UPPZY_API_KEY": KEY, "SLACK_BOT_TOKEN": SLACK_BOT, "PORT": "abc"})
    assert KEY not in str(info.value) and SLACK_BOT not in str(info.value)
    assert KEY not in repr(info.value)


def test_require_names_the_missing_variable() -> None:
    """Settings.require raises a ConfigError naming the first required variable that is not set."""
    settings = load_settings({"UPPZY_API_KEY": KEY})
    settings.require("UPPZY_API_KEY")
    with pytest.raises(ConfigError) as info:
        settings.require("UPPZY_API_KEY", "UPPZY_SITE_ID")
    assert str(info.value).startswith("UPPZY_SITE_ID: ")
    assert info.value.variable == "UPPZY_SITE_ID"
    assert KEY not in str(info.value)


def test_require_treats_an_empty_secret_as_missing() -> None:
    """A Secret holding an empty string does not satisfy require()."""
    settings = Settings(uppzy_api_key=Secret(""))
    with pytest.raises(ConfigError, match=r"^UPPZY_API_KEY: "):
        settings.require("UPPZY_API_KEY")


def test_slack_admin_user_ids_parse_commas_semicolons_and_spaces() -> None:
    """SLACK_ADMIN_USER_IDS is a set split on commas or semicolons, blanks and duplicates dropped."""
    settings = load_settings({"SLACK_ADMIN_USER_IDS": " U111, U222;U333,,U111 ; "})
    assert settings.slack_admin_user_ids == frozenset({"U111", "U222", "U333"})


def test_discord_guild_ids_parse_to_ints_in_order() -> None:
    """DISCORD_GUILD_IDS becomes a tuple of ints in the order written, duplicates dropped."""
    settings = load_settings({"DISCORD_GUILD_IDS": "30, 10;20,10"})
    assert settings.discord_guild_ids == (30, 10, 20)


def test_bad_discord_guild_ids_raise_config_error() -> None:
    """A non-numeric guild id raises a ConfigError naming DISCORD_GUILD_IDS."""
    with pytest.raises(ConfigError, match=r"^DISCORD_GUILD_IDS: .*numeric"):
        load_settings({"DISCORD_GUILD_IDS": "1234, my-server"})


@pytest.mark.parametrize("variable", ["UPPZY_API_KEY", "SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET",
                                      "DISCORD_BOT_TOKEN"])
@pytest.mark.parametrize(("tail", "words"), [
    ("\u200b", "invisible character (U+200B)"),
    ("\ufeff", "invisible character (U+FEFF)"),
    ("\u00a0x", "a space (U+00A0)"),
    ("in side", "a space (U+0020)"),
    ("\u00e9", "non-ASCII character (U+00E9)"),
    ("\u0441", "non-ASCII character (U+0441)"),  # Cyrillic 'с', looks like a Latin c
])
def test_keys_and_tokens_with_hidden_or_foreign_characters_are_refused(variable: str, tail: str, words: str) -> None:
    """A key or token with a zero-width, non-breaking or inner space or a non-ASCII character is one ConfigError
    line naming the variable and the code point, never the value; outer spaces and line breaks are dropped."""
    with pytest.raises(ConfigError) as info:
        load_settings({variable: KEY + tail})
    text = str(info.value)
    assert info.value.variable == variable and text.startswith(f"{variable}: ") and words in text
    assert KEY not in text and "1234567890" not in text and "\n" not in text
    assert load_settings({variable: f" {KEY}\r\n"}).secrets() == [KEY]


def test_discord_shard_settings_parse() -> None:
    """DISCORD_SHARD_COUNT is a whole number; DISCORD_SHARD_IDS a comma list of ids, kept sorted; unset is ()."""
    settings = load_settings({"DISCORD_SHARD_COUNT": "4", "DISCORD_SHARD_IDS": " 2, 0 "})
    assert (settings.discord_shard_count, settings.discord_shard_ids) == (4, (0, 2))
    settings.check_discord_shards()
    assert (load_settings({}).discord_shard_count, load_settings({}).discord_shard_ids) == (None, ())
    load_settings({"DISCORD_SHARD_COUNT": "2"}).check_discord_shards()


@pytest.mark.parametrize(("env", "variable", "words"), [
    ({"DISCORD_SHARD_COUNT": "0"}, "DISCORD_SHARD_COUNT", "whole number greater than zero"),
    ({"DISCORD_SHARD_COUNT": "2.5"}, "DISCORD_SHARD_COUNT", "whole number greater than zero"),
    ({"DISCORD_SHARD_COUNT": "many"}, "DISCORD_SHARD_COUNT", "whole number greater than zero"),
    ({"DISCORD_SHARD_COUNT": "4", "DISCORD_SHARD_IDS": "0,x"}, "DISCORD_SHARD_IDS", "whole numbers from 0"),
    ({"DISCORD_SHARD_COUNT": "4", "DISCORD_SHARD_IDS": "-1"}, "DISCORD_SHARD_IDS", "whole numbers from 0"),
    ({"DISCORD_SHARD_COUNT": "4", "DISCORD_SHARD_IDS": "1,2,1"}, "DISCORD_SHARD_IDS", "lists shard 1 twice"),
    ({"DISCORD_SHARD_COUNT": "4", "DISCORD_SHARD_IDS": "1,4"}, "DISCORD_SHARD_IDS",
     "shard 4 does not exist with DISCORD_SHARD_COUNT=4: shard ids run from 0 to 3"),
    ({"DISCORD_SHARD_IDS": "0"}, "DISCORD_SHARD_IDS", "needs DISCORD_SHARD_COUNT"),
])
def test_bad_discord_shard_settings_are_one_line_naming_the_variable(env: dict[str, str], variable: str,
                                                                     words: str) -> None:
    """Malformed values fail at load; ids without a count, or an id not below the count, fail the cross-field
    check that `run` (and the Discord bot's start) makes; each is one line starting with the variable."""
    with pytest.raises(ConfigError) as info:
        load_settings(env).check_discord_shards()
    text = str(info.value)
    assert info.value.variable == variable and text.startswith(f"{variable}: ") and "\n" not in text
    assert words in text
