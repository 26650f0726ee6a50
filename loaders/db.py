"""The connection a loader is handed: settings as a value, and `connect` with one-line errors.

Which database to use is the application's decision (`refinery.connection`); the loaders only
receive the resolved settings.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from urllib.parse import quote, urlencode

import psycopg
from psycopg import conninfo as pg_conninfo

from loaders.errors import ConfigurationError


@dataclass(frozen=True)
class DatabaseSettings:
    """Resolved connection settings, shared by psycopg and dbt."""

    host: str
    port: int
    user: str
    password: str | None
    dbname: str
    source: str  # "DATABASE_URL", "PG variables" or "embedded"
    sslmode: str | None = None  # e.g. verify-full (PGSSLMODE or ?sslmode= in the URL)
    sslrootcert: str | None = None  # the CA certificate file (PGSSLROOTCERT or ?sslrootcert=)

    def conninfo(self, **overrides: object) -> str:
        params: dict[str, object] = {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "dbname": self.dbname,
            "connect_timeout": 10,
            "application_name": "refinery",
        }
        if self.password:
            params["password"] = self.password
        if self.sslmode:
            params["sslmode"] = self.sslmode
        if self.sslrootcert:
            params["sslrootcert"] = self.sslrootcert
        params.update(overrides)
        return pg_conninfo.make_conninfo(**{k: str(v) for k, v in params.items()})

    def url(self, *, show_password: bool = False) -> str:
        auth = quote(self.user, safe="")
        if self.password:
            auth += ":" + (quote(self.password, safe="") if show_password else "***")
        url = f"postgresql://{auth}@{self.host}:{self.port}/{quote(self.dbname, safe='')}"
        query = {name: value for name, value in self.tls().items() if value}
        return f"{url}?{urlencode(query, safe='/')}" if query else url

    def tls(self) -> dict[str, str]:
        """The TLS settings that are set, by their libpq names."""
        values = {"sslmode": self.sslmode, "sslrootcert": self.sslrootcert}
        return {name: value for name, value in values.items() if value}

    def describe(self) -> str:
        tls = f", sslmode={self.sslmode}" if self.sslmode else ""
        return f"{self.host}:{self.port}/{self.dbname} as {self.user} ({self.source}{tls})"

    def with_database(self, dbname: str) -> DatabaseSettings:
        return replace(self, dbname=dbname)


def _explain(exc: psycopg.OperationalError, settings: DatabaseSettings) -> str:
    text = str(exc).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    detail = lines[-1] if lines else "unknown error"
    for line in lines:
        if "FATAL" in line or "refused" in line or "timeout" in line or "resolve" in line:
            detail = line
            break
    detail = detail.replace("connection failed: ", "")
    where = f"{settings.host}:{settings.port}"
    lower = text.lower()
    if "password authentication failed" in lower or "no password supplied" in lower:
        return (
            f"PostgreSQL at {where} rejected user {settings.user!r}: "
            f"wrong or missing password ({settings.source})"
        )
    if "does not exist" in lower and "database" in lower:
        return (
            f"database {settings.dbname!r} does not exist on {where}; create it "
            f"(createdb {settings.dbname}) or set PGDATABASE ({settings.source})"
        )
    if "refused" in lower or "could not connect" in lower or "timeout" in lower:
        return f"cannot reach PostgreSQL at {where} ({settings.source}): {detail}"
    return f"cannot connect to PostgreSQL at {where} ({settings.source}): {detail}"


def connect(settings: DatabaseSettings, **kwargs: object) -> psycopg.Connection:
    """A psycopg connection, or a ConfigurationError with one clear line."""
    try:
        return psycopg.connect(settings.conninfo(), **kwargs)  # type: ignore[arg-type]
    except psycopg.OperationalError as exc:
        raise ConfigurationError(_explain(exc, settings)) from exc
