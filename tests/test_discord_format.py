"""Pure Discord helpers: mention defusing, splitting, thread titles, nonces, escalation targets, intents."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bots.discord import format as fmt
from bots.discord.app import bot_intents, bot_permissions, invite_url
from bots.discord.translate import workspace_of


def test_mentions_are_defused_outside_code() -> None:
    """@everyone, @here, <@id>, <@!id> and <@&id> no longer parse as pings; code spans are left untouched."""
    text = "hi @everyone @here <@12345678901234567> <@!12345678901234567> <@&12345678901234567> `@here`"
    out = fmt.neutralise_mentions(text)

    for ping in ("@everyone", "@here ", "<@12345678901234567>", "<@!1", "<@&1"):
        assert ping not in out
    assert out.endswith("`@here`")
    assert fmt.neutralise_mentions("```\n@everyone\n```") == "```\n@everyone\n```"
    assert fmt.neutralise_mentions("mail me@hereford.example") == "mail me@hereford.example"


def test_answer_chunks_respect_the_limit_and_carry_the_note_last() -> None:
    """Every chunk is ≤2,000 characters and the low-confidence note sits under the last one as subtext."""
    text = "\n\n".join(["word " * 300] * 4)
    chunks = fmt.answer_chunks(text, "Not sure.")

    assert len(chunks) > 1 and all(len(c) <= fmt.MESSAGE_LIMIT for c in chunks)
    assert chunks[-1].endswith("-# ⚠️ Not sure.") and all("Not sure" not in c for c in chunks[:-1])
    assert fmt.answer_chunks("short") == ["short"]


@pytest.mark.parametrize(
    ("markdown", "shown"),
    [
        ("[https://good.example](https://evil.example)", "https://good.example (<https://evil.example>)"),
        ("[good.example](<https://evil.example/x>)", "good.example (<https://evil.example/x>)"),
        ("[www.bank.example/login](https://bank.example.evil.example/login)",
         "www.bank.example/login (<https://bank.example.evil.example/login>)"),
        ("[https://x.io/a](https://x.io/b)", "https://x.io/a (<https://x.io/b>)"),
        ("[the docs](https://evil.example)", "[the docs](https://evil.example)"),
        ("[https://x.io/](http://www.x.io)", "[https://x.io/](http://www.x.io)"),
        ("[x.io](https://x.io/pricing)", "[x.io](https://x.io/pricing)"),
        ("`[https://a.example](https://b.example)`", "`[https://a.example](https://b.example)`"),
    ],
)
def test_masked_links_whose_text_is_another_url_show_the_real_target(markdown: str, shown: str) -> None:
    """A link text that reads as a different URL or domain is followed by the real target; honest links stay."""
    assert fmt.answer_chunks(markdown) == [shown]


def test_note_gets_its_own_message_when_the_last_chunk_is_full() -> None:
    """A last chunk with no room left for the note is followed by the note alone."""
    chunks = fmt.answer_chunks("x" * 1999, "Check this.")
    assert chunks == ["x" * 1999, "-# ⚠️ Check this."]


def test_thread_name_is_the_question_within_discords_limit() -> None:
    """Titles are the question on one line, at most 100 characters, with a fallback for empty questions."""
    assert fmt.thread_name("How do  returns\nwork?", "alice") == "How do returns work?"
    long = fmt.thread_name("why " * 60, "alice")
    assert len(long) == fmt.THREAD_NAME_LIMIT and long.endswith("…")
    assert fmt.thread_name("<@123456789012345678> **", "alice") == "Question from alice"


def test_question_text_strips_only_the_bot_mention() -> None:
    """Both mention forms of the bot go; other mentions stay for context."""
    assert fmt.question_text("<@42> hi <@!42> there <@7>", 42) == "hi   there <@7>"


def test_nonce_is_short_stable_and_per_chunk() -> None:
    """The same delivery key and chunk give the same ≤25-char nonce; other chunks differ."""
    first = fmt.nonce_for("uppzy-turn-7", 0)
    assert first == fmt.nonce_for("uppzy-turn-7", 0) and len(first) <= 25
    assert first != fmt.nonce_for("uppzy-turn-7", 1) != fmt.nonce_for("uppzy-turn-8", 1)


@pytest.mark.parametrize(("value", "parsed"), [
    ("<@&123456789012345678>", ("role", 123456789012345678)),
    ("<@123456789012345678>", ("user", 123456789012345678)),
    ("<#123456789012345678>", ("channel", 123456789012345678)),
    ("Role:123", ("role", 123)),
    ("123456789012345678", ("id", 123456789012345678)),
    ("@support", None),
])
def test_escalation_targets_parse(value: str, parsed: tuple[str, int] | None) -> None:
    """Admins may give a mention, a kind:id pair or a bare id; anything else is rejected."""
    assert fmt.escalation_of(value) == parsed


def test_ids_links_intents_and_invite() -> None:
    """DMs share one workspace; links, intents and the invite permission integer are exactly as documented."""
    assert workspace_of(None) == "dm" and workspace_of(5) == "5"
    assert fmt.jump_link("5", 6, 7) == "https://discord.com/channels/5/6/7"
    intents = bot_intents()
    assert intents.message_content and not intents.members and not intents.presences
    assert bot_permissions().value == 326417583104
    assert invite_url(99).endswith("client_id=99&scope=bot+applications.commands&permissions=326417583104")


def test_importing_the_discord_modules_changes_nothing() -> None:
    """Importing the bot modules leaves discord.py's URLs alone and opens nothing (checked in a fresh process)."""
    code = ("import discord.http, discord.gateway as g; before = (discord.http.Route.BASE, g.DiscordWebSocket."
            "DEFAULT_GATEWAY); import bots.discord.app, bots.discord.admin, bots.discord.events; "
            "assert (discord.http.Route.BASE, g.DiscordWebSocket.DEFAULT_GATEWAY) == before")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)
