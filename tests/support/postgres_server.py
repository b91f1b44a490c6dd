"""A real PostgreSQL server for the tests: ``initdb`` + ``pg_ctl`` in a temporary folder.

The server listens on 127.0.0.1 on a free port, trusts local connections (the
tests never need a password) and is stopped and removed at the end of the
session. ``initdb`` refuses to run as root, so as root the server runs as the
``postgres`` user Debian's package creates (``runuser``). When no server can
be started (no binaries, no such user) the tests that need one are skipped
with the reason; in CI ``.ci/run`` installs Debian's ``postgresql`` first.
``restart`` stops and starts the same cluster (the database-lost tests).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

RUN_AS = "postgres"  # the Debian package's user, used when the tests run as root


def find_binaries() -> Path | None:
    """The folder holding initdb and pg_ctl: Debian's versioned folder first, else PATH."""
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if Path(folder, "initdb").is_file() and Path(folder, "pg_ctl").is_file():
            return Path(folder)
    found = shutil.which("initdb")
    return Path(found).parent if found and shutil.which("pg_ctl") else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PostgresServer:
    bin_dir: Path
    root: Path
    port: int
    user: str | None  # run the server as this user (None: as ourselves)
    databases: list[str] = field(default_factory=list)

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bin_dir / argv[0]), *argv[1:]]
        if self.user is not None:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)

    def init(self) -> None:
        done = self._run(
            "initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
            "--no-sync", "-E", "UTF8", "--locale=C",
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {done.stderr.strip() or done.stdout.strip()}")

    def start(self) -> None:
        # fsync off: a test cluster never needs to survive a power loss, and it is
        # most of the commit time on a shared CI disk.
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.root} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        done = self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-o", options,
            "-w", "-t", "60", "start",
        )  # fmt: skip
        if done.returncode != 0:
            log = (self.root / "server.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"pg_ctl start failed: {done.stderr.strip()}\n{log}")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def restart(self) -> None:
        self.stop()
        self.start()

    def create_database(self) -> str:
        """A fresh, empty database; its URL (no password: the cluster trusts 127.0.0.1)."""
        name = "t_" + uuid.uuid4().hex[:12]
        done = self._run("psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                         "-d", "postgres", "-q", "-c", f"CREATE DATABASE {name}")  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"CREATE DATABASE failed: {done.stderr.strip()}")
        self.databases.append(name)
        return self.url(name)

    def remove(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


def start_server() -> PostgresServer:
    """Start a throwaway cluster; raises RuntimeError saying why one cannot be started."""
    bin_dir = find_binaries()
    if bin_dir is None:
        raise RuntimeError(
            "PostgreSQL is not installed (no initdb/pg_ctl; `apt-get install postgresql`)"
        )
    user = None
    root = Path(tempfile.mkdtemp(prefix="guardbot-pg-"))
    if os.geteuid() == 0:  # initdb refuses root: run the cluster as the package's user
        try:
            account = pwd.getpwnam(RUN_AS)
        except KeyError:
            shutil.rmtree(root, ignore_errors=True)
            raise RuntimeError(f"running as root and there is no {RUN_AS!r} user") from None
        os.chown(root, account.pw_uid, account.pw_gid)
        user = RUN_AS
    server = PostgresServer(bin_dir, root, free_port(), user)
    try:
        server.init()
        server.start()
    except (RuntimeError, OSError, subprocess.SubprocessError):
        shutil.rmtree(root, ignore_errors=True)
        raise
    return server
