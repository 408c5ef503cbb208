"""Every Slack-specific sentence users and admins see, in one place (core's own lines live in core.messages)."""

from __future__ import annotations

__all__ = [
    "ADMIN_ONLY",
    "ANSWER_IN_CHANNEL",
    "CHANNEL_IN_DM",
    "COMMAND_FAILED",
    "END_BUSY",
    "END_NO_SESSION",
    "ESCALATION",
    "FEEDBACK_BAD_LABEL",
    "FEEDBACK_GOOD_LABEL",
    "HELP",
    "HOME_ADMIN_HEADER",
    "HOME_ADMIN_HINT",
    "HOME_EDIT_BUTTON",
    "HOME_END_BUTTON",
    "HOME_INTRO",
    "HOME_NO_DM",
    "HOME_TITLE",
    "HUMAN_FAILED",
    "HUMAN_LABEL",
    "HUMAN_NOBODY",
    "HUMAN_NOT_AN_ANSWER",
    "LOW_CONFIDENCE_PREFIX",
    "MODAL_CANCEL",
    "MODAL_SAVE",
    "MODAL_SAVED",
    "MODAL_TITLE",
    "RATED_BAD",
    "RATED_GOOD",
    "SESSIONS_FAILED",
    "SESSIONS_NONE",
    "SET_USAGE",
    "TEXT_ONLY",
    "THINKING_STATUS",
    "answer_in_dm",
    "channel_mode_set",
    "human_escalation",
    "human_notified",
    "reset_done",
    "sessions_header",
    "setting_saved",
    "status_lines",
    "unknown_command",
]

TEXT_ONLY = "I can only read text for now. Please type your question as a message."
THINKING_STATUS = "is thinking…"
LOW_CONFIDENCE_PREFIX = ":warning:"
FEEDBACK_GOOD_LABEL = "👍 Helpful"
FEEDBACK_BAD_LABEL = "👎 Not helpful"
ANSWER_IN_CHANNEL = "<@{user}> I couldn't reply in the thread of your question (it seems to be gone), so here it is:"
ESCALATION = "{ping}An answer was rated 👎 and may need a human look. <{link}|Open the thread>"
HUMAN_LABEL = "🙋 Talk to a human"
RATED_GOOD = "👍 Rating received: helpful. Thank you!"
RATED_BAD = "👎 Rating received: not helpful. Thank you!"
HUMAN_NOBODY = ("Nobody is set up to take questions from here yet, so I couldn't pass this on. Please ask a "
                "workspace admin (they can name someone with `/uppzy set escalation_target`).")
HUMAN_FAILED = "Sorry, I couldn't reach the people who help here just now. Please try again in a minute."
HUMAN_NOT_AN_ANSWER = "That message isn't one of my answers any more, so I can't pass it on."

HELP = (
    "*Uppzy assistant*: mention me in a channel, message me directly, or keep talking in a thread where you asked me.\n"
    "• `/uppzy help`: this help\n"
    "• `/uppzy status`: settings, connection to the assistant, questions in progress\n"
    "• `/uppzy end`: end your conversation here (the next message starts a fresh one)\n"
    "• `/uppzy ask <question>`: answered privately, in our direct messages (you can share it here afterwards)\n"
    "*Admins only*\n"
    "• `/uppzy set <key> <value>` / `/uppzy reset <key>`: change a workspace setting (see `/uppzy status`)\n"
    "• `/uppzy channel mention|all|off`: in this channel, answer mentions, every new message, or nothing\n"
    "• `/uppzy sessions [@user]`: the assistant's conversation list for a person"
)
ADMIN_ONLY = "Sorry, only workspace admins and owners (or the bot's own admins) can do that. Nothing was changed."
COMMAND_FAILED = "Sorry, something went wrong on my side. Please try again in a moment."
SET_USAGE = "Usage: `/uppzy set <key> <value>`. Settable keys: {keys}"
CHANNEL_IN_DM = "Run `/uppzy channel mention|all|off` inside the channel you want to change."
END_NO_SESSION = "You have no open conversation with me here."
END_BUSY = "I'm still working on your last question; please try again once it's answered."
SESSIONS_NONE = "No conversations found for {who}."
SESSIONS_FAILED = "Sorry, I couldn't fetch the conversation list from the assistant service right now."

_MODE_TEXT = {
    "mention": "I'll answer here when someone mentions me.",
    "all": "I'll answer every new message in this channel (and follow-ups in my threads).",
    "off": "I'll stay quiet in this channel, even when mentioned.",
}

HOME_TITLE = "Uppzy assistant"
HOME_INTRO = (
    "I answer questions with the company's Uppzy AI assistant.\n"
    "• *Ask me* by mentioning me in a channel, or message me here in the Messages tab.\n"
    "• *Follow up* in the thread where you asked me; no need to mention me again.\n"
    "• *Rate an answer* with its 👍 / 👎 buttons or reactions; it helps improve the answers.\n"
    "• *Start over* with `/uppzy end` in a channel, or the button below for our direct messages."
)
HOME_END_BUTTON = "End my conversation"
HOME_NO_DM = "Open the Messages tab and say hello to start a conversation."
HOME_ADMIN_HEADER = "Workspace settings (admins)"
HOME_ADMIN_HINT = "Per channel: `/uppzy channel mention|all|off`. Full command list: `/uppzy help`."
HOME_EDIT_BUTTON = "Edit settings"
MODAL_TITLE = "Uppzy settings"
MODAL_SAVE = "Save"
MODAL_CANCEL = "Cancel"
MODAL_SAVED = "Settings saved."


def unknown_command(word: str) -> str:
    """Reply to a sub-command we do not know, with the help text."""
    shown = word[:30].replace("`", "'")
    return f"I don't know `{shown}`.\n\n{HELP}"


def setting_saved(key: str, value: str) -> str:
    """Confirmation after `/uppzy set`."""
    return f"Saved: `{key}` is now `{value}`."


def reset_done(key: str, value: str) -> str:
    """Confirmation after `/uppzy reset`."""
    return f"Reset: `{key}` is back to its default, `{value}`."


def channel_mode_set(mode: str) -> str:
    """Confirmation after `/uppzy channel`, saying what the mode means."""
    return f"Channel mode is now `{mode}`. {_MODE_TEXT.get(mode, '')}".rstrip()


def sessions_header(who: str, count: int) -> str:
    """First line of the `/uppzy sessions` answer."""
    return f"*Conversations for {who}* ({count}):"


def status_lines(*, uppzy_ok: bool, uppzy_detail: str, pending: int, open_sessions: int, channel_mode: str,
                 settings: list[tuple[str, str, str]]) -> str:
    """The `/uppzy status` answer; values are already escaped for mrkdwn."""
    icon = ":white_check_mark:" if uppzy_ok else ":warning:"
    lines = [
        "*Uppzy status for this workspace*",
        f"• Assistant service: {icon} {uppzy_detail}",
        f"• Questions in progress: {pending}",
        f"• Open conversations: {open_sessions}",
        f"• This channel: `{channel_mode}`",
        "*Settings*",
    ]
    lines += [f"• `{key}` = `{value}`: {help_text}" for key, value, help_text in settings]
    return "\n".join(lines)


def human_escalation(ping: str, user: str, link: str) -> str:
    """The message the escalation target gets when someone asks for a human on an answer."""
    return f"{ping}<@{user}> asked to talk to a human about an answer. <{link}|Open the thread>"


def human_notified(who: str) -> str:
    """What the person who asked for a human is told (only they see it)."""
    return f"I've asked {who} to take a look; they'll follow up in the thread."


def answer_in_dm(link: str | None) -> str:
    """First line of an answer (or notice) that could not be posted where it was asked, sent by DM instead."""
    asked = f"<{link}|where you asked>" if link else "where you asked"
    return f"I couldn't reply {asked} (the channel is archived or I'm no longer in it), so here it is:"
