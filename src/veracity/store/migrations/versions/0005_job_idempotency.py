"""Jobs created with an Idempotency-Key: a repeated creation finds the job it made.

Prediction IDs are the service's own from this revision on; the rows stored before keep
theirs (the request ID), and ``request_id`` stays what it was: the correlation field.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("idempotency_key", sa.String(64), nullable=True))
        batch.create_index("ix_jobs_idempotency_key", ["idempotency_key"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index("ix_jobs_idempotency_key")
        batch.drop_column("idempotency_key")
