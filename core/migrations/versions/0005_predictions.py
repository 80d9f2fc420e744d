"""predictions: every scored row with its inputs, outputs and model version

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    json_type = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
    op.create_table(
        "predictions",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("model_id", sa.String(32), sa.ForeignKey("models.id", ondelete="CASCADE"), nullable=False),
        sa.Column("model_version", sa.Integer(), nullable=False),
        sa.Column("inputs", json_type, nullable=False),
        sa.Column("outputs", json_type, nullable=False),
        sa.Column("created_by", sa.String(128), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_predictions_created", "predictions", ["created_at"])
    op.create_index("ix_predictions_model", "predictions", ["model_id"])


def downgrade() -> None:
    op.drop_index("ix_predictions_model", table_name="predictions")
    op.drop_index("ix_predictions_created", table_name="predictions")
    op.drop_table("predictions")
