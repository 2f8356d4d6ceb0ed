"""Fixtures every test package shares: the sandbox (mlc_sandbox.testing) and a fresh
PostgreSQL database for the ledger's PostgreSQL tests."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest

pytest_plugins = ["mlc_sandbox.testing"]

# The machine's PostgreSQL (trust auth); each test gets a database of its own on it.
PG_ADMIN_URL = os.environ.get(
    "ML_CONNECTOR_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    """The server's admin URL; fails (never skips) when PostgreSQL does not answer, since
    the ledger's PostgreSQL tests are part of every CI run."""
    import psycopg  # the `postgres` extra is part of the test setup
    from sqlalchemy.engine import make_url

    url = make_url(PG_ADMIN_URL)
    try:
        psycopg.connect(host=url.host, port=url.port or 5432, user=url.username,
                        password=url.password, dbname=url.database, connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL does not answer at {url.host}:{url.port or 5432} ({exc}); "
                    "start it or point ML_CONNECTOR_TEST_PG_URL at one")
    return PG_ADMIN_URL


@pytest.fixture
def pg_url(pg_admin_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database, dropped after the test."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"mlc_test_{secrets.token_hex(6)}"
    admin = create_engine(pg_admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(pg_admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
