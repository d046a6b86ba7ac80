"""BIC and SEPA direct-debit mandate of a member (personal data; the IBAN came with 0006_privacy)

Revision ID: 0006_member_iban
Revises: 0006_privacy
Create Date: 2026-12-02

Kept in ``member_personal`` (AVG/GDPR: apart from the pseudonymous ledger); a payment run
reads them to write its SEPA files.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_member_iban"
down_revision = "0006_privacy"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("member_personal", sa.Column("bic", sa.String(length=11), nullable=True))
    op.add_column(
        "member_personal", sa.Column("sepa_mandate_id", sa.String(length=35), nullable=True)
    )
    op.add_column("member_personal", sa.Column("sepa_mandate_date", sa.Date(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("member_personal") as batch:
        batch.drop_column("sepa_mandate_date")
        batch.drop_column("sepa_mandate_id")
        batch.drop_column("bic")
