"""Pseudonymity checks: ids that reach measurements and the ledger hold no word of a name.

A person's ref, the names of their assets, their channel keys and the usernames of member
users are stored in tables that are hash-chained or copied into measurements and plans, so
they could never be erased; :func:`check_pseudonymous` refuses one that holds a telling word
(3+ characters, not a Dutch particle) of the person's name, e-mail local part or label.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from energy.errors import ValidationError
from energy.models import Member, MemberKind

#: Words of a name too short or too common to be telling on their own (Dutch particles).
_PARTICLES = frozenset({"van", "der", "den", "de", "het", "ter", "ten", "von", "the", "and"})
_WORD = re.compile(r"[a-z0-9]+")


def fold(text: str) -> str:
    """Lower case without accents (``Fatima El Amrani`` -> ``fatima el amrani``)."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower()


def name_words(*texts: str | None) -> set[str]:
    """The telling words (3+ characters, not a particle) of names and e-mail local parts."""
    words: set[str] = set()
    for text in texts:
        if not text:
            continue
        local = text.split("@", 1)[0] if "@" in text else text
        words |= {w for w in _WORD.findall(fold(local)) if len(w) >= 3 and w not in _PARTICLES}
    return words


def person_words(name: str | None, email: str | None = None, label: str | None = None) -> set[str]:
    """The words that would identify a person: of the name, the e-mail and the label."""
    return name_words(name, email, label)


def check_pseudonymous(
    value: str, words: Iterable[str], what: str, source: str | None, location: str
) -> None:
    """Refuse ``value`` (a ref, asset name, channel key or username) holding a name word.

    Raises
    ------
    ValidationError
        At ``location``, naming the word found (it is already in the caller's file).
    """
    folded = fold(value)
    found = sorted(w for w in set(words) if w in folded)
    if found:
        raise ValidationError(
            f"{what} {value!r} contains {found[0]!r} from the person's name or e-mail; "
            "ids that reach measurements or the ledger must be pseudonymous "
            "(e.g. an opaque ref like m-7f3a9c; keep the human label as `label:`)",
            source,
            location,
        )


def member_words(member: Member | None) -> set[str]:
    """The identifying words of a person member (none for organisations or unknown)."""
    if member is None or member.kind is not MemberKind.PERSON or member.personal is None:
        return set()
    p = member.personal
    return person_words(p.name, p.email, p.label)
