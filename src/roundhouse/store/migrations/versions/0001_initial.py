"""The first registry: servers (desired state) and instances (actual state).

Revision ID: 0001
Revises:
Create Date: 2025-01-01

Written out rather than built from ``schema.metadata``: a migration is a fixed record of what
was applied, and must not change when the schema module does.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "servers",
        sa.Column("slug", sa.String(40), nullable=False),
        sa.Column("spec", sa.Text(), nullable=False),
        sa.Column("desired_instances", sa.Integer(), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("slug", name="pk_servers"),
    )
    op.create_table(
        "instances",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("server", sa.String(40), nullable=False),
        sa.Column("ordinal", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("health", sa.String(16), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("pgid", sa.Integer(), nullable=True),
        sa.Column("pid_start_ticks", sa.BigInteger(), nullable=True),
        sa.Column("port", sa.Integer(), nullable=True),
        sa.Column("endpoint", sa.Text(), nullable=True),
        sa.Column("started_at", sa.Double(), nullable=True),
        sa.Column("stopped_at", sa.Double(), nullable=True),
        sa.Column("last_health_check", sa.Double(), nullable=True),
        sa.Column("last_response_time", sa.Double(), nullable=True),
        sa.Column("restart_count", sa.Integer(), nullable=False),
        sa.Column("last_exit_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("stderr_tail", sa.Text(), nullable=False),
        sa.Column("owner", sa.String(64), nullable=True),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_instances"),
        sa.ForeignKeyConstraint(
            ["server"],
            ["servers.slug"],
            name="fk_instances_server_servers",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_instances_server", "instances", ["server"])


def downgrade() -> None:
    op.drop_index("ix_instances_server", table_name="instances")
    op.drop_table("instances")
    op.drop_table("servers")
