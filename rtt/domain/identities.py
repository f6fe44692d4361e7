"""System identities: profile ids that name the app itself (`system_identities`, default
`["System"]`). They are not profiles: no token is minted for one, no socket connects as one,
and no client sends to one, so nobody can pose as the app on its one-way system channel.

A lookalike counts as the identity it imitates. Ids are compared by a key that folds what a
reader would not tell apart: Unicode compatibility forms (full-width letters), case
(`system`), and whitespace, control and invisible format characters anywhere (a trailing
space, a zero-width space). Letters of another script that merely look alike (Cyrillic ones) are
different letters: such an id is an ordinary profile, everywhere alike.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

_INVISIBLE = ("Z", "Cc", "Cf")  # separators (all spaces), controls, format characters


def identity_key(profile_id: str) -> str:
    """The form two ids share when a reader would take one for the other."""
    folded = unicodedata.normalize("NFKC", profile_id).casefold()
    return "".join(c for c in folded if not unicodedata.category(c).startswith(_INVISIBLE))


def is_system_identity(profile_id: str, system_identities: Iterable[str]) -> bool:
    """Whether `profile_id` is, or passes for, one of the app's system identities."""
    key = identity_key(profile_id)
    return any(key == identity_key(name) for name in system_identities)
