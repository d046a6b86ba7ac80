"""Settlement tables: runs, the hash-chained transfers, per-member-day figures, statements.

The ledger refers to members only by their pseudonymous ref (``energy.models.Member.ref``);
names and addresses are joined from ``MemberPersonal`` only when a statement is rendered.
Transfers are immutable: the migration installs triggers that refuse UPDATE and DELETE
(PostgreSQL and SQLite). Everything else here may be written by the settlement code only
inside the posting transaction.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from energy.clock import utc_now
from energy.db import Base, UTCDateTime


class ChainHead(Base):
    """The head of the transfer hash chain; locked (``FOR UPDATE``) by every posting."""

    __tablename__ = "settlement_chain_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    last_hash: Mapped[str] = mapped_column(String(64))


class DocCounter(Base):
    """Gap-free document number counters (one row per series, locked while posting)."""

    __tablename__ = "settlement_doc_counters"

    series: Mapped[str] = mapped_column(String(40), primary_key=True)
    last_number: Mapped[int] = mapped_column(Integer, default=0)


class SettlementRun(Base):
    """One settlement of a community and period on one version of the data.

    Several runs may hold one data version (data A, then B, then A again: the third run posts
    the difference back to A), so the data version is not unique; postings are serialised by
    the chain-head lock. ``kind``: ``settle`` (from meter data) or ``reprice`` (the energy tax
    and VAT of a later month re-priced because an earlier month's taxed energy changed its
    band). ``coverage_days`` of ``period_days`` local days had meter data; the fee is charged
    pro rata to them. ``prior_wh``: taxed energy per connection earlier in the calendar year
    [Wh] that set the energy-tax band (a price input, part of the data version).
    """

    __tablename__ = "settlement_runs"
    __table_args__ = (
        CheckConstraint("status IN ('posted', 'pending', 'voided')", name="status_valid"),
        CheckConstraint("kind IN ('settle', 'reprice')", name="kind_valid"),
        Index("ix_settlement_runs_period", "community", "period"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    community: Mapped[str] = mapped_column(String(100), index=True)
    period: Mapped[str] = mapped_column(String(7))
    data_version: Mapped[str] = mapped_column(String(64))
    provisional: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(10))
    tariff_digest: Mapped[str] = mapped_column(String(64))
    n_transfers: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utc_now)
    kind: Mapped[str] = mapped_column(String(10), default="settle", server_default="settle")
    energy_version: Mapped[str | None] = mapped_column(String(64))
    coverage_days: Mapped[int | None] = mapped_column(Integer)
    period_days: Mapped[int | None] = mapped_column(Integer)
    prior_wh: Mapped[dict[str, int] | None] = mapped_column(JSON)


class TariffDocument(Base):
    """A tariff exactly as a run was priced with it (canonical YAML, by its sha256 digest), so
    that a later month can be re-priced with its own tariff when an earlier month changes."""

    __tablename__ = "settlement_tariffs"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    document: Mapped[str] = mapped_column(Text)


class CommunityTariff(Base):
    """A community's tariff as the operator last set it (canonical YAML, like
    :class:`TariffDocument`): each row is the whole tariff after one change, the newest is in
    force for new runs (over the community file's tariff). Rows are only added."""

    __tablename__ = "settlement_community_tariffs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    community: Mapped[str] = mapped_column(String(100), index=True)
    digest: Mapped[str] = mapped_column(String(64))
    document: Mapped[str] = mapped_column(Text)
    #: The local date from which the change holds (the version it added starts then).
    changed_from: Mapped[dt.date] = mapped_column(Date)
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utc_now)


class PaymentRun(Base):
    """A period's SEPA payment run: payouts (pain.001) and collections (pain.008), recorded in
    the ledger as transfers to and from the community's bank clearing account; one per
    community and period (the unique constraint refuses a second)."""

    __tablename__ = "settlement_payment_runs"
    __table_args__ = (
        UniqueConstraint("community", "period", name="uq_settlement_payment_runs_period"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    community: Mapped[str] = mapped_column(String(100))
    period: Mapped[str] = mapped_column(String(7))
    execution_date: Mapped[dt.date] = mapped_column(Date)
    n_payouts: Mapped[int] = mapped_column(Integer)
    payout_cents: Mapped[int] = mapped_column(BigInteger)
    n_collections: Mapped[int] = mapped_column(Integer)
    collection_cents: Mapped[int] = mapped_column(BigInteger)
    payout_digest: Mapped[str | None] = mapped_column(String(64))
    collection_digest: Mapped[str | None] = mapped_column(String(64))
    #: The SEPA files as written (so they can be written again, byte for byte).
    payout_xml: Mapped[str | None] = mapped_column(Text)
    collection_xml: Mapped[str | None] = mapped_column(Text)
    max_seq: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utc_now)


class Transfer(Base):
    """An immutable double-entry transfer: ``amount`` moves from ``debit_account`` to
    ``credit_account`` in one ledger (``wh`` or ``cents``).

    ``flags``: ``posted`` (counts), ``pending`` (a provisional run; does not count),
    ``post_pending`` (posts a pending transfer; counts), ``void_pending`` (voids one).
    ``hash = sha256(canonical serialisation incl. prev_hash)``, see
    :func:`settlement.ledger.transfer_hash`.

    ``run_id``, ``reverses_id`` and ``pending_id`` must name an existing run and existing
    transfers: checked by the database once per INSERT statement (a trigger over the inserted
    rows, migration ``settlement_0003_speed``) instead of a foreign key checked per row; a run
    with transfers cannot be deleted.
    """

    __tablename__ = "settlement_transfers"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("ledger IN ('wh', 'cents')", name="ledger_valid"),
        CheckConstraint("debit_account <> credit_account", name="accounts_differ"),
        CheckConstraint(
            "flags IN ('posted', 'pending', 'post_pending', 'void_pending')", name="flags_valid"
        ),
        # only what a query or a constraint needs (each index costs on every posting):
        # migration settlement_0003_speed
        Index("ix_settlement_transfers_period_member", "community", "period", "member_ref"),
        Index(
            "uq_settlement_transfers_reverses_id",
            "reverses_id",
            unique=True,
            postgresql_where=text("reverses_id IS NOT NULL"),
            sqlite_where=text("reverses_id IS NOT NULL"),
        ),
        Index(
            "ix_settlement_transfers_pending_run",
            "run_id",
            postgresql_where=text("flags = 'pending'"),
            sqlite_where=text("flags = 'pending'"),
        ),
    )

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    ledger: Mapped[str] = mapped_column(String(5))
    debit_account: Mapped[str] = mapped_column(String(120))
    credit_account: Mapped[str] = mapped_column(String(120))
    amount: Mapped[int] = mapped_column(BigInteger)
    idempotency_id: Mapped[str] = mapped_column(String(200), unique=True)
    #: Refers to an earlier transfer (a reversal; at most one per transfer).
    reverses_id: Mapped[int | None] = mapped_column(BigInteger)
    #: Refers to the pending transfer this posts or voids.
    pending_id: Mapped[int | None] = mapped_column(BigInteger)
    run_id: Mapped[int] = mapped_column(Integer)
    community: Mapped[str] = mapped_column(String(100))
    period: Mapped[str] = mapped_column(String(7))
    code: Mapped[str] = mapped_column(String(20))
    day: Mapped[dt.date] = mapped_column(Date)
    member_ref: Mapped[str | None] = mapped_column(String(64))
    flags: Mapped[str] = mapped_column(String(12), default="posted")
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class MemberDay(Base):
    """Metered and allocated energy of one member on one local day in one run [Wh]."""

    __tablename__ = "settlement_member_days"

    run_id: Mapped[int] = mapped_column(ForeignKey("settlement_runs.id"), primary_key=True)
    member_ref: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    offtake_wh: Mapped[int] = mapped_column(BigInteger)
    shared_wh: Mapped[int] = mapped_column(BigInteger)
    injection_wh: Mapped[int] = mapped_column(BigInteger)
    supplied_wh: Mapped[int] = mapped_column(BigInteger)
    discharge_wh: Mapped[int] = mapped_column(BigInteger, default=0)
    green_discharge_wh: Mapped[int] = mapped_column(BigInteger, default=0)
    green_supplied_wh: Mapped[int] = mapped_column(BigInteger, default=0)
    #: Shared energy received that crossed the public grid into the member's connection: the
    #: base of energy tax [Wh] (what came from behind the same connection is not taxed).
    taxed_wh: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    #: The member's grid connection (EAN, or ``member:<ref>`` where none is known).
    connection: Mapped[str | None] = mapped_column(String(64))


class Statement(Base):
    """A member's statement for a period; ``number`` is gap-free per series (year)."""

    __tablename__ = "settlement_statements"
    __table_args__ = (CheckConstraint("kind IN ('statement', 'correction')", name="kind_valid"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[str] = mapped_column(String(40), unique=True)
    member_ref: Mapped[str] = mapped_column(String(64), index=True)
    community: Mapped[str] = mapped_column(String(100))
    period: Mapped[str] = mapped_column(String(7))
    run_id: Mapped[int] = mapped_column(ForeignKey("settlement_runs.id"))
    kind: Mapped[str] = mapped_column(String(12))
    corrects_id: Mapped[int | None] = mapped_column(ForeignKey("settlement_statements.id"))
    max_seq: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utc_now)


TRANSFERS: Table = Transfer.__table__  # type: ignore[assignment]
"""The transfers table (Core, for fast bulk inserts)."""
MEMBER_DAYS: Table = MemberDay.__table__  # type: ignore[assignment]
"""The member-days table (Core)."""


class Record(Base):
    """A sealed record: a member-day row, a statement or a period root, hash-chained.

    ``digest`` is ``sha256`` over the record's canonical content (see
    :func:`settlement.proof.member_day_content`, ``statement_content``, ``root_content``);
    ``hash`` chains it: ``sha256`` over ``[seq, kind, key, digest, previous hash]``. The chain
    head is ``ChainHead`` row 2 (row 1 is the transfers'). The database refuses UPDATE and
    DELETE of records, member days, statements and period roots (migration
    ``settlement_0002_proof``); ``settlement.ledger.verify`` checks every row against its
    record and names the first that differs.
    """

    __tablename__ = "settlement_records"
    __table_args__ = (
        CheckConstraint("kind IN ('member_day', 'statement', 'root')", name="kind_valid"),
    )

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(String(12))
    key: Mapped[str] = mapped_column(String(200), unique=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("settlement_runs.id"), index=True)
    digest: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class PeriodRoot(Base):
    """The RFC 6962 Merkle root over a (community, period)'s transfers up to ``max_seq``,
    and the root over the member-day rows of the run that stored it.

    One row each time a run posts transfers of the period; ``tree_size`` is the number of
    the period's transfers with ``seq <= max_seq`` (leaves in sequence order).
    """

    __tablename__ = "settlement_period_roots"
    __table_args__ = (
        UniqueConstraint("community", "period", "tree_size", name="uq_settlement_period_roots"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    community: Mapped[str] = mapped_column(String(100))
    period: Mapped[str] = mapped_column(String(7))
    run_id: Mapped[int] = mapped_column(ForeignKey("settlement_runs.id"))
    tree_size: Mapped[int] = mapped_column(BigInteger)
    max_seq: Mapped[int] = mapped_column(BigInteger)
    root_hash: Mapped[str] = mapped_column(String(64))
    #: RFC 6962 root over the run's member-day rows (member ref, day order; leaf data the
    #: row's canonical content, :func:`settlement.proof.member_day_bytes`) and their number.
    days_root: Mapped[str] = mapped_column(String(64))
    days_size: Mapped[int] = mapped_column(BigInteger)
