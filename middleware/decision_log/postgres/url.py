"""Where the shared log lives: a ``postgresql://`` URL, and its password from the environment.

The URL sits in ``config.toml``; a password never does (the file is shared
and committed). A URL that carries one is refused with the variable to use
instead: ``[log] password_env`` (``PGPASSWORD`` by default, the name every
PostgreSQL tool reads). The URL is shown without any password.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

SCHEMES = ("postgresql", "postgres")


def is_postgres_url(target: str) -> bool:
    return target.split("://", 1)[0].lower() in SCHEMES and "://" in target


def password_in(url: str) -> bool:
    return urlsplit(url).password is not None


@dataclass(frozen=True)
class PgTarget:
    url: str
    password: str | None = field(default=None, repr=False)

    def __str__(self) -> str:
        """The URL as shown to people: host, port and database (a password never)."""
        parts = urlsplit(self.url)
        host = parts.hostname or "localhost"
        port = f":{parts.port}" if parts.port else ""
        user = f"{parts.username}@" if parts.username else ""
        return f"PostgreSQL {user}{host}{port}{parts.path or '/'}"


def target_from(url: str, env: Mapping[str, str], password_env: str = "PGPASSWORD") -> PgTarget:
    """The URL with its password from ``env``; ValueError if the URL holds one itself."""
    if not is_postgres_url(url):
        raise ValueError(f"not a PostgreSQL URL (postgresql://user@host:port/db): {url[:40]!r}")
    if password_in(url):
        raise ValueError(
            f"the log URL must not hold a password; set it in the environment variable "
            f"{password_env} instead"
        )
    parts = urlsplit(url)
    return PgTarget(urlunsplit(parts), env.get(password_env) or None)
