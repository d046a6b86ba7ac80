"""``energy.sites.ensure_members`` (many members in a few statements) against
``ensure_member`` called one by one: the same rows, changes and errors."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from energy.errors import ValidationError
from energy.models import Member, MemberKind, MemberPersonal
from energy.sites import Change, MemberSpec, ensure_member, ensure_members

STORED = [
    MemberSpec("m-5e0a11", MemberKind.PERSON, "Anna Bakker", "anna@example.org"),
    MemberSpec("m-coop", MemberKind.ORGANISATION, "Coop"),
    MemberSpec("m-bare"),
]
ASKED = [
    MemberSpec("m-5e0a11", name="Anna Bakker"),  # a reference to a stored member
    MemberSpec("m-7b2c90", MemberKind.PERSON, "Joost Mulder"),  # new, with personal data
    MemberSpec("m-coop"),
    MemberSpec("m-9d4e11", MemberKind.ORGANISATION, "Sportclub"),
    MemberSpec("m-7b2c90", name="Joost Mulder"),  # the same new member again
    MemberSpec("m-bare"),
]


def _state(session):
    return sorted(
        (m.ref, m.kind.value, None if m.personal is None else m.personal.name)
        for m in session.scalars(select(Member))
    )


@pytest.mark.parametrize("update", [False, True])
def test_bulk_is_one_by_one(sessions, update) -> None:
    results = []
    for bulk in (False, True):
        with sessions.begin() as s:
            for spec in STORED:
                ensure_member(s, spec)
            if bulk:
                got = ensure_members(s, ASKED, update=update)
            else:
                got = [ensure_member(s, spec, update=update) for spec in ASKED]
            results.append(([g.change for g in got], [g.row.ref for g in got], _state(s)))
            assert all(g.row.id is not None for g in got)  # flushed: ids are there
            s.rollback()
    assert results[0] == results[1]
    # a reference, or (update) the personal data without the e-mail the spec leaves out
    assert results[1][0][:2] == [Change.UPDATED if update else Change.UNCHANGED, Change.CREATED]
    assert results[1][0][4] == Change.UNCHANGED  # the second mention of a new member


def test_bulk_names_the_first_conflict_like_one_by_one(sessions) -> None:
    with sessions.begin() as s:
        for spec in STORED:
            ensure_member(s, spec)
    asked = [
        MemberSpec("m-4f1a22", MemberKind.PERSON, "Lotte Smit"),
        MemberSpec("m-coop", MemberKind.PERSON),
        MemberSpec("m-5e0a11", name="anna"),
    ]
    paths = [f"members[{k}]" for k in range(len(asked))]
    with pytest.raises(ValidationError) as err, sessions.begin() as s:  # rolled back
        ensure_members(s, asked, update=False, source="c.yaml", paths=paths)
    assert str(err.value) == (
        "c.yaml:members[1].kind: member 'm-coop' is stored as organisation, the file says person"
    )
    with sessions() as s:  # nothing of the failed transaction is stored
        assert s.scalar(select(func.count()).select_from(Member)) == 3
        assert s.scalar(select(func.count()).select_from(MemberPersonal)) == 2
    leaky = [MemberSpec("m-lotte1", MemberKind.PERSON, "Lotte Smit")]
    with sessions.begin() as s, pytest.raises(ValidationError, match=r"members\[0\].ref"):
        ensure_members(s, leaky, source="c.yaml", paths=["members[0]"])
