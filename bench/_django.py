"""Django set-up shared by the benchmarks that run against a real database.

    from bench._django import setup_django
    setup_django(database_url="postgres://postgres@127.0.0.1:5432/simlabel_bench")

Creates the PostgreSQL database when it is missing (the benchmark database is
disposable: it never holds anyone's data), migrates it, and configures Django
the way a production process runs: DEBUG off, so no query log slows the
measurements down.  Query counts are taken explicitly with
CaptureQueriesContext.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _maintenance_url(database_url: str) -> tuple[str, str]:
    parts = urlsplit(database_url)
    name = parts.path.lstrip("/")
    if not name:
        raise SystemExit(f"{database_url}: the URL names no database")
    return urlunsplit(parts._replace(path="/postgres")), name


def ensure_postgres_database(database_url: str, *, recreate: bool = False) -> bool:
    """Creates (or, with recreate, drops and creates) the database; True when it was created."""
    import psycopg
    from psycopg import sql

    maintenance, name = _maintenance_url(database_url)
    with psycopg.connect(maintenance, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is not None
        if exists and recreate:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
            exists = False
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            return True
    return False


def setup_django(*, database_url: str | None = None, recreate: bool = False, var_dir: str | None = None) -> None:
    """Points Django at `database_url` (None: SQLite in var_dir), migrates, and sets it up."""
    var = Path(var_dir or os.environ.get("SIMLABEL_VAR_DIR") or Path(tempfile.gettempdir()) / "simlabel-bench")
    var.mkdir(parents=True, exist_ok=True)
    os.environ["SIMLABEL_VAR_DIR"] = str(var)
    (var / "staticfiles").mkdir(exist_ok=True)  # WhiteNoise warns about a missing STATIC_ROOT on every request
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    os.environ.setdefault("DJANGO_DEBUG", "false")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    if database_url:
        if database_url.startswith(("postgres://", "postgresql://")):
            ensure_postgres_database(database_url, recreate=recreate)
        os.environ["DATABASE_URL"] = database_url
    else:
        os.environ.pop("DATABASE_URL", None)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def machine_description() -> str:
    import platform

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kb / 1024 / 1024:.0f} GB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return f"{os.cpu_count()} cores ({cpu}){memory}, Python {platform.python_version()}"


def database_description() -> str:
    from django.db import connection

    if connection.vendor == "postgresql":
        major, minor = divmod(connection.pg_version, 10000)
        return f"PostgreSQL {major}.{minor} ({connection.settings_dict.get('NAME')})"
    return f"{connection.vendor} ({connection.settings_dict.get('NAME')})"
