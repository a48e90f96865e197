"""What the raw-SQL paths share: which database this is, and how many ids one statement may bind.

The fast paths (label writes, run columns, suggestions, image inserts) are
written for PostgreSQL, which takes a whole id list as one array parameter
(`= ANY(%s)`, `unnest(%s)`): one short statement instead of thousands of
placeholders. SQLite (development, the default test run) takes the portable
branch, with id lists cut to fit its bound-parameter limit.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from django.db import connection


def on_postgres() -> bool:
    """True when the default database is PostgreSQL (the array-parameter paths apply)."""
    return connection.vendor == "postgresql"


def on_postgres_or_sqlite() -> bool:
    """True for the two databases whose INSERT ... ON CONFLICT DO NOTHING the raw inserts use."""
    return connection.vendor in ("postgresql", "sqlite")


def max_query_params(default: int) -> int:
    """The backend's bound-parameter limit (SQLite's can be 999), or `default` where it has none."""
    return getattr(connection.features, "max_query_params", None) or default


def id_chunk_size() -> int:
    """How many ids one `id IN (...)` may list: under the parameter limit, with room for a few more."""
    return max(100, min(10_000, max_query_params(10_000) - 20))


def chunks(seq: Sequence, size: int | None = None) -> Iterator[Sequence]:
    """`seq` in slices of `size` (default: id_chunk_size())."""
    size = size or id_chunk_size()
    for start in range(0, len(seq), size):
        yield seq[start : start + size]
