"""The answer size cap: a huge answer would flood a thread with dozens of messages, so it is cut and says so."""

from __future__ import annotations

import re

__all__ = ["shorten_answer"]

_FENCE = re.compile(r"^[ \t]*(```|~~~)", re.MULTILINE)


def _boundary(text: str, budget: int) -> int:
    """Where to cut at most `budget` characters in: a paragraph, else a line, else a word, else hard."""
    for separator in ("\n\n", "\n", " "):
        cut = text.rfind(separator, 0, budget + 1)
        if cut >= budget // 2:
            return cut
    return budget


def shorten_answer(text: str, limit: int, note: str) -> str:
    """`text` if it has at most `limit` characters; else its head (cut at a paragraph, never inside an open code
    fence: the fence is cut before, or closed) followed by `note`, `limit` characters in all."""
    if len(text) <= limit:
        return text
    closer_room = 4  # "\n```" if the cut lands inside a code block that started long ago
    budget = max(0, limit - len(note) - 2 - closer_room)
    head = text[:_boundary(text, budget)].rstrip()
    fences = list(_FENCE.finditer(head))
    if len(fences) % 2:  # the cut is inside a code block
        opener = fences[-1]
        if opener.start() >= budget // 2:
            head = head[:opener.start()].rstrip()  # drop the half block: enough text comes before it
        else:
            head = f"{head}\n{opener.group(1)}"
    return f"{head}\n\n{note}"
