"""Secrets at rest: tokens and keys are sealed with SECRETS_KEY (Fernet) before the store ever sees them."""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from core.config import ConfigError
from core.setting_parsers import GENERATE_FERNET_KEY, SettingError, fernet_keys

__all__ = ["GENERATE_FERNET_KEY", "SecretBox", "SecretUnreadable"]


class SecretUnreadable(ValueError):
    """A sealed value that no configured SECRETS_KEY key opens; the text names the setting, never a key."""


class SecretBox:
    """MultiFernet over the keys of SECRETS_KEY: the first key seals, any of them opens."""

    __slots__ = ("_first", "_keys", "_multi")

    def __init__(self, keys: list[str]) -> None:
        fernets = [Fernet(key) for key in keys]
        self._keys = len(fernets)
        self._first = fernets[0]
        self._multi = MultiFernet(fernets)

    @classmethod
    def from_setting(cls, value: str) -> SecretBox:
        """The box of a SECRETS_KEY value: one or more Fernet keys, comma-separated (spaces around commas allowed).

        Empty or malformed raises ConfigError("SECRETS_KEY", …) saying how to generate a key (never the key itself).
        """
        try:
            keys = fernet_keys(value or "")
        except SettingError as exc:
            raise ConfigError("SECRETS_KEY", str(exc)) from None
        return cls(keys)

    def __repr__(self) -> str:
        return f"SecretBox({self._keys} key{'s' if self._keys != 1 else ''})"

    def seal(self, plain: str) -> str:
        """`plain` encrypted (and authenticated) with the first key, as url-safe text."""
        return self._multi.encrypt(plain.encode("utf-8")).decode("ascii")

    def open(self, sealed: str) -> str:
        """The clear text of a sealed value; SecretUnreadable when no configured key opens it."""
        try:
            return self._multi.decrypt(sealed.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError, ValueError, TypeError, AttributeError):
            raise SecretUnreadable(_UNREADABLE) from None

    def reseal(self, sealed: str) -> str | None:
        """None when `sealed` is already sealed with the first key (a rerun rewrites nothing), else the same secret
        sealed with the first key. SecretUnreadable when no configured key opens it."""
        try:
            self._first.decrypt(sealed.encode("ascii"))
            return None
        except (InvalidToken, UnicodeError, ValueError, TypeError, AttributeError):
            pass
        return self.seal(self.open(sealed))


_UNREADABLE = ("a stored secret cannot be decrypted with any key in SECRETS_KEY (was the key it was sealed with "
               "removed before `uppzy-bot secrets rotate` ran?): put that key back in SECRETS_KEY, after the new one")
