"""A small built-in knowledge base so the simulated assistant answers like a real site would."""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Entry", "KnowledgeBase", "Reply"]


@dataclass(frozen=True, slots=True)
class Entry:
    """One FAQ entry: the words that point at it and the Markdown answer."""

    keywords: frozenset[str]
    answer: str


@dataclass(frozen=True, slots=True)
class Reply:
    """An answer with Uppzy-style confidence (score 0-100 and a level)."""

    answer: str
    score: int
    level: str


_DEFAULT = (
    Entry(frozenset({"return", "returns", "refund", "refunds", "exchange"}),
          "**Returns are accepted within 30 days** of delivery.\n\n"
          "1. Open *Orders* in your account.\n2. Choose the item and press **Return**.\n"
          "3. Print the label and drop the parcel at any post office.\n\n"
          "Refunds reach your card within 5 business days. Details: [returns policy](https://example.com/returns)."),
    Entry(frozenset({"ship", "shipping", "delivery", "deliver", "track", "tracking"}),
          "Standard shipping takes **2-4 business days**; express arrives next day if ordered before 2 pm.\n\n"
          "- Tracking links are emailed when the parcel leaves the warehouse.\n"
          "- Orders over $50 ship free."),
    Entry(frozenset({"password", "reset", "login", "log", "sign", "account"}),
          "To reset your password, open the sign-in page and choose **Forgot password**. "
          "We email a link that works for 30 minutes.\n\nIf no email arrives, check spam or ask us to unlock "
          "the account."),
    Entry(frozenset({"api", "key", "keys", "token", "integration", "curl"}),
          "API keys are created under *Settings → API access* by the account owner. Test one with:\n\n"
          "```bash\ncurl -H \"X-API-Key: $UPPZY_API_KEY\" https://api.uppzy.com/api/v1/m2m/tenants/$TENANT/limits\n"
          "```\n\nKeep keys server-side and rotate them regularly."),
    Entry(frozenset({"price", "pricing", "plan", "plans", "cost", "billing", "invoice"}),
          "We offer three plans:\n\n- **Starter**: $19/month, 1 site\n- **Growth**: $79/month, 5 sites, API access\n"
          "- **Scale**: custom pricing, SSO and audit logs\n\nInvoices are in *Settings → Billing*."),
    Entry(frozenset({"hours", "open", "contact", "support", "phone", "human", "agent"}),
          "Support is available **Monday to Friday, 9:00-18:00 CET**. Email support@example.com or call "
          "+1 555 0100. Ask for a human agent any time."),
)

_WORD = re.compile(r"[a-z0-9]+")


class KnowledgeBase:
    """Keyword matcher: more matching words → higher confidence; nothing matching → a low-confidence reply."""

    def __init__(self, entries: tuple[Entry, ...] = _DEFAULT) -> None:
        self.entries = entries

    def answer(self, question: str) -> Reply:
        """Pick the best entry for the question and score how sure we are."""
        words = set(_WORD.findall(question.lower()))
        best, hits = None, 0
        for entry in self.entries:
            count = len(words & entry.keywords)
            if count > hits:
                best, hits = entry, count
        if best is None:
            return Reply(
                "I'm not sure I have that in my knowledge base. Could you rephrase, or ask about returns, "
                "shipping, passwords, plans or support hours?", 22, "low",
            )
        score = min(96, 58 + 14 * hits)
        return Reply(best.answer, score, "high" if score >= 75 else "medium")
