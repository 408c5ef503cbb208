"""Every Discord-specific sentence users, admins and operators see, in one place so none leaks an API detail."""

from __future__ import annotations

__all__ = [
    "ADMIN_ONLY",
    "BUTTON_BAD",
    "BUTTON_GOOD",
    "BUTTON_HUMAN",
    "COMMAND_FAILED",
    "DESCRIBE_ADMIN_GROUP",
    "DESCRIBE_CHANNEL",
    "DESCRIBE_CHANNEL_MODE",
    "DESCRIBE_END",
    "DESCRIBE_GROUP",
    "DESCRIBE_HELP",
    "DESCRIBE_SESSIONS",
    "DESCRIBE_SESSIONS_USER",
    "DESCRIBE_SET",
    "DESCRIBE_SET_KEY",
    "DESCRIBE_SET_VALUE",
    "DESCRIBE_STATUS",
    "END_BUSY",
    "END_NONE",
    "ESCALATION_FORMAT",
    "FEEDBACK_UNKNOWN",
    "GUILD_ONLY",
    "HELP",
    "HUMAN_FAILED",
    "HUMAN_NOBODY",
    "HUMAN_NOT_AN_ANSWER",
    "INTENT_REFUSED",
    "NO_SESSIONS",
    "SHARDING_REQUIRED",
    "SHARD_REFUSED",
    "TEXT_ONLY",
    "TOKEN_MISSING",
    "TOKEN_REFUSED",
    "answer_in_channel",
    "answer_in_dm",
    "api_unreachable",
    "channel_mode_set",
    "escalation_in_channel",
    "escalation_in_thread",
    "gateway_timeout",
    "human_in_channel",
    "human_in_thread",
    "human_line",
    "low_confidence",
    "sessions_list",
    "setting_invalid",
    "setting_saved",
    "status_report",
    "thread_fallback_name",
]

# --- conversations -------------------------------------------------------------------------------------

TEXT_ONLY = "I can only read text for now. Could you type your question as a message?"
BUTTON_GOOD = "Helpful"
BUTTON_BAD = "Not helpful"
BUTTON_HUMAN = "Talk to a human"
FEEDBACK_UNKNOWN = "Sorry, I couldn't record that rating. Please try again in a minute."


def thread_fallback_name(user: str) -> str:
    """Thread title when the question has no usable first line."""
    return f"Question from {user}"


def low_confidence(note: str) -> str:
    """The small subtext line under a low-confidence answer."""
    return f"-# ⚠️ {note}"


def answer_in_channel(user_id: str, link: str) -> str:
    """First line when the question's thread is closed to the bot and the answer goes to its channel instead."""
    return f"<@{user_id}> I couldn't post in the thread of your question ({link}), so here is my answer:"


def answer_in_dm(link: str) -> str:
    """First line when neither the thread nor its channel takes the answer and it goes to the asker's DMs."""
    return f"I couldn't post where you asked ({link}): it is archived or closed to me. Here is my answer:"


def escalation_in_thread(mention: str, link: str) -> str:
    """Posted in the conversation's thread, pinging exactly the configured role or user."""
    return f"{mention} an answer here was rated 👎 and could use a human look: {link}"


def escalation_in_channel(link: str) -> str:
    """Posted in the configured escalation channel, with a jump link to the rated answer."""
    return f"An answer was rated 👎 and could use a human look: {link}"


def human_in_thread(mention: str, link: str) -> str:
    """"Talk to a human": posted in the conversation's thread, pinging exactly the configured role or user."""
    return f"{mention} someone here asked to talk to a human about this answer: {link}"


def human_in_channel(link: str) -> str:
    """"Talk to a human": posted in the configured escalation channel, with a jump link to the answer."""
    return f"Someone asked to talk to a human about this answer: {link}"


# --- slash commands ------------------------------------------------------------------------------------

DESCRIBE_GROUP = "Talk to the Uppzy assistant"
DESCRIBE_HELP = "How to ask me questions and rate answers"
DESCRIBE_END = "Close your conversation with me in this channel"
DESCRIBE_ADMIN_GROUP = "Manage the Uppzy assistant on this server"
DESCRIBE_STATUS = "Settings, Uppzy connection and activity for this server"
DESCRIBE_SET = "Change a setting for this server"
DESCRIBE_SET_KEY = "Which setting"
DESCRIBE_SET_VALUE = "The new value (the reply lists what is accepted)"
DESCRIBE_CHANNEL = "How I listen in this channel"
DESCRIBE_CHANNEL_MODE = "mention: only when mentioned · all: every message · off: never"
DESCRIBE_SESSIONS = "List a member's conversations"
DESCRIBE_SESSIONS_USER = "The member"

HELP = (
    "**Uppzy assistant**\n"
    "• Mention me in a channel and I answer in a thread; keep talking in that thread without mentioning me.\n"
    "• DM me to ask privately.\n"
    "• `/ask <question>` answers right where you type it, in servers without me too once you add the app to your "
    "account (only you see it where I am not a member).\n"
    "• Rate an answer with its 👍/👎 buttons or reactions.\n"
    "• `/uppzy end` closes your conversation here so the next question starts fresh.\n"
    "Server managers: `/uppzy-admin status`, `/uppzy-admin set`, `/uppzy-admin channel`, `/uppzy-admin sessions`."
)
END_NONE = "You have no open conversation with me here."
END_BUSY = "I'm still working on your last question; try `/uppzy end` again once it's answered."
ADMIN_ONLY = "Only members with the **Manage Server** permission can use this command."
GUILD_ONLY = "This command only works inside a server."
NO_SESSIONS = "No conversations found for that member."
ESCALATION_FORMAT = ("escalation_target must be a role (@Support), a member (@name), a channel (#escalations), "
                     "or none")
COMMAND_FAILED = "Sorry, something went wrong while running that command. Please try again in a minute."


def setting_saved(key: str, value: str) -> str:
    """Confirmation after `/uppzy-admin set`."""
    return f"Saved: `{key}` is now `{value}`."


def setting_invalid(problem: str) -> str:
    """A refused value; `problem` already lists what is accepted."""
    return f"Not saved: {problem}."


_MODE_TEXT = {
    "mention": "I answer here only when mentioned (and in my threads).",
    "all": "I answer every message in this channel.",
    "off": "I stay silent in this channel, even when mentioned.",
}


def channel_mode_set(channel: str, mode: str) -> str:
    """Confirmation after `/uppzy-admin channel`."""
    return f"{channel} is now `{mode}`: {_MODE_TEXT.get(mode, '')}"


def status_report(settings: list[tuple[str, str, str]], uppzy_ok: bool, detail: str, pending: int,
                  open_sessions: int) -> str:
    """The `/uppzy-admin status` text, kept under Discord's 2,000-character limit."""
    health = "✅ reachable" if uppzy_ok else f"❌ {detail}"
    lines = [f"**Uppzy:** {health}", f"**Questions in flight:** {pending} · **Open conversations:** {open_sessions}",
             "**Settings** (change with `/uppzy-admin set`):"]
    for key, value, _help in settings:
        shown = value if len(value) <= 80 else value[:79] + "…"
        lines.append(f"• `{key}` = {shown}")
    return "\n".join(lines)[:2000]


def sessions_list(user: str, rows: list[tuple[str, str, str]]) -> str:
    """`/uppzy-admin sessions`: (session id, state, last update) rows for one member."""
    lines = [f"**Conversations of {user}** (newest first, up to 15):"]
    lines += [f"• `{sid}` — {state}, updated {updated}" for sid, state, updated in rows[:15]]
    return "\n".join(lines)[:2000]


# --- operator (start-up) -------------------------------------------------------------------------------

TOKEN_MISSING = "is required for Discord but is not set (see .env.example)"
TOKEN_REFUSED = ("Discord refused the bot token (401). Copy a fresh one from the developer portal "
                 "(your application → Bot → Reset Token) into DISCORD_BOT_TOKEN")
SHARD_REFUSED = ("Discord refused this replica's shard (close 4010 invalid shard): every replica must use the same "
                 "DISCORD_SHARD_COUNT, and each id in DISCORD_SHARD_IDS must be below it")
SHARDING_REQUIRED = ("Discord requires sharding for this bot (close 4011: too many servers for one session): set "
                     "DISCORD_SHARD_COUNT to the count Discord recommends, or leave it unset to use that count")
INTENT_REFUSED = ("Discord refused the Message Content intent. In the developer portal open your application → "
                  "Bot → Privileged Gateway Intents → Message Content Intent, switch it on, save, and restart")


def gateway_timeout(seconds: float) -> str:
    """Start-up gave up waiting for READY."""
    return (f"no READY from the Discord gateway within {seconds:.0f}s; check network access to Discord "
            "(or DISCORD_GATEWAY_URL / DISCORD_API_BASE_URL)")


def api_unreachable(reason: str) -> str:
    """Login could not reach Discord's REST API."""
    return f"could not reach Discord's API to log in ({reason}); check network access or DISCORD_API_BASE_URL"


# "Talk to a human": what the person who asked is told privately, by the request's outcome.
HUMAN_NOBODY = "Nobody is set up to take questions from me here yet; please ask an admin of this server."
HUMAN_FAILED = "I couldn't reach a human just now. Please try again in a moment."
HUMAN_NOT_AN_ANSWER = "That message isn't one of my answers."


def human_line(outcome: str, target: str | None) -> str:
    """The private reply to a "Talk to a human" click (outcome: core's HumanOutcome value)."""
    if outcome == "sent" and target:
        return f"I've asked {target} to take a look; they'll follow up in this conversation."
    if outcome == "already_sent" and target:
        return f"{target} was already asked to take a look at this answer."
    if outcome == "not_configured":
        return HUMAN_NOBODY
    if outcome == "not_an_answer":
        return HUMAN_NOT_AN_ANSWER
    return HUMAN_FAILED


DESCRIBE_ASK = "Ask Uppzy a question; the answer comes here (only you see it where the bot is not a member)"
DESCRIBE_ASK_QUESTION = "Your question"
ASK_OFF = "The bot is switched off in this channel, so /ask cannot answer here. Try another channel or a DM."


def ask_answer_in_dm(question: str) -> str:
    """First line of an `/ask` answer that came too late for the command (or after a restart): which question."""
    return f"Here is my answer to your /ask question “{question}”:" if question else "Here is my answer to your /ask:"
