"""Alembic environment of facesearch.

`Store` runs the migrations on its own connection (config.attributes["connection"]). The
`alembic` command line (run from the repository root) connects to the Config's sqlalchemy.url,
else to $FACESEARCH_DB_URL, else to the default index's SQLite file.
"""
from __future__ import annotations

from logging.config import fileConfig
from pathlib import Path

import sqlalchemy as sa
from alembic import context
from sqlalchemy.pool import NullPool

from facesearch.index.store import Base, database_url
from facesearch.settings import Settings

config = context.config
if config.config_file_name is not None:  # the command line; Store leaves logging alone
    fileConfig(config.config_file_name)
target_metadata = Base.metadata


def _url() -> str | sa.URL:
    settings = Settings.from_env()  # FACESEARCH_DB_URL, else the index's SQLite file
    url = config.get_main_option("sqlalchemy.url") or database_url(settings.index_dir, settings.db_url)
    if isinstance(url, sa.URL):  # the default index's SQLite file: its folder may not exist yet
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    return url


def run_migrations(connection: sa.Connection) -> None:
    """Run the pending migrations on `connection` (batch mode on SQLite, to allow ALTERs)."""
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
elif (shared_connection := config.attributes.get("connection")) is not None:
    run_migrations(shared_connection)
else:
    with sa.create_engine(_url(), poolclass=NullPool).connect() as own_connection:
        run_migrations(own_connection)
        own_connection.commit()
