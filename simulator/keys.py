"""Several Uppzy API keys in one simulator: a safe name for a key in records, and the `--key` CLI syntax."""

from __future__ import annotations

import hashlib

__all__ = ["key_fingerprint", "parse_key_binding"]


def key_fingerprint(key: str) -> str:
    """A non-secret name for a key in recorded calls: its first 6 characters (fewer for a short key), an ellipsis
    and 6 hex digits of its SHA-256, so two keys with the same prefix are still told apart."""
    shown = key[: min(6, len(key) // 2)]
    return f"{shown}…{hashlib.sha256(key.encode()).hexdigest()[:6]}"


def parse_key_binding(text: str) -> tuple[str, tuple[str, ...]]:
    """`KEY=SITE[,SITE...]` (a proposed repeatable `bots simulate --key`) -> (key, sites); ValueError says why."""
    key, sep, sites_text = text.partition("=")
    sites = tuple(s.strip() for s in sites_text.split(",") if s.strip())
    if not sep or not key.strip() or not sites:
        raise ValueError("expected KEY=SITE[,SITE...], e.g. team2-key=site-b")
    bad = [s for s in sites if s in (".", "..") or "/" in s or any(c.isspace() for c in s)]
    if bad:
        raise ValueError(f"not a site id: {bad[0]!r}")
    return key.strip(), sites
