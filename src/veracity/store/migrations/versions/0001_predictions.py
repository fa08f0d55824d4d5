"""Predictions and reviewer feedback.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

from veracity.store.schema import Document, UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "predictions",
        sa.Column("id", sa.String(80), primary_key=True),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("key_id", sa.String(64), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("input_sha256", sa.String(64), nullable=False),
        sa.Column("media_type", sa.String(64), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("model_name", sa.String(200), nullable=False),
        sa.Column("model_version", sa.String(100), nullable=False),
        sa.Column("weights_sha256", sa.String(64), nullable=False),
        sa.Column("calibration_version", sa.String(100), nullable=True),
        sa.Column("fake_prob", sa.Float(), nullable=True),
        sa.Column("real_prob", sa.Float(), nullable=True),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("reasons", Document, nullable=False),
        sa.Column("timings_ms", Document, nullable=False),
        sa.Column("timeline", Document, nullable=True),
        sa.Column("response", Document, nullable=False),
        sa.Column("cache_key", sa.String(64), nullable=False),
        sa.Column("cached_from", sa.String(80), nullable=True),
    )
    op.create_index("ix_predictions_request_id", "predictions", ["request_id"])
    op.create_index("ix_predictions_input_sha256", "predictions", ["input_sha256"])
    op.create_index("ix_predictions_cache_key", "predictions", ["cache_key"])
    op.create_index("ix_predictions_key_created", "predictions", ["key_id", "created_at", "id"])
    op.create_index("ix_predictions_created", "predictions", ["created_at", "id"])
    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "prediction_id",
            sa.String(80),
            sa.ForeignKey("predictions.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("label", sa.String(16), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("reviewer_key_id", sa.String(64), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_feedback_prediction_id", "feedback", ["prediction_id"])


def downgrade() -> None:
    op.drop_table("feedback")
    op.drop_table("predictions")
