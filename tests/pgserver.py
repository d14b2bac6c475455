"""A throwaway PostgreSQL cluster for one test session: never a server the suite did not start.

``initdb`` into a fresh temporary directory, its own superuser, a free loopback port and a
unix socket in that directory; started once, stopped and removed at the end. Clients use
the socket (trust, reachable only through the 0700 directory); TCP on 127.0.0.1 asks for
the superuser's random password, so nothing else on the machine can use the cluster.

``initdb`` and ``pg_ctl`` refuse to run as root, and CI runs as root: there the cluster
belongs to the ``postgres`` system user that Debian's package creates.

``STANCH_TEST_POSTGRES_DSN`` points the suite at an existing server instead, on purpose
(its tests create and drop their own schemas and a ``stanch_audit_worker`` role there).
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

from stanch.runtime import free_port

ENV_DSN = "STANCH_TEST_POSTGRES_DSN"
DATABASE = "stanch_test"


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries: ``make sysdeps`` installs them."""


def server_bindir() -> Path:
    """Where ``initdb`` and ``pg_ctl`` live: Debian keeps them off PATH, per major version."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                        key=lambda p: int(Path(p).parts[3]) if Path(p).parts[3].isdigit() else 0)
    if candidates:
        return Path(candidates[-1]).parent
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    raise PostgresUnavailable(
        "PostgreSQL server binaries (initdb, pg_ctl) not found: run `make sysdeps` "
        "(Debian package `postgresql`), or set STANCH_TEST_POSTGRES_DSN to a server of yours")


@dataclass
class PostgresServer:
    """One running throwaway cluster."""

    datadir: Path
    port: int
    password: str
    _user: str | None

    @property
    def dsn(self) -> str:
        """libpq DSN of the superuser over the unix socket in the cluster's own directory."""
        return f"host={self.datadir} port={self.port} dbname={DATABASE} user=postgres"

    def dsn_for(self, user: str) -> str:
        return f"host={self.datadir} port={self.port} dbname={DATABASE} user={user}"

    @classmethod
    def start(cls) -> PostgresServer:
        bindir = server_bindir()
        user = "postgres" if os.geteuid() == 0 else None
        datadir = Path(tempfile.mkdtemp(prefix="stanch-pg-"))
        if user is not None:
            entry = pwd.getpwnam(user)
            os.chown(datadir, entry.pw_uid, entry.pw_gid)
        os.chmod(datadir, 0o700)
        password = secrets.token_urlsafe(24)
        pwfile = datadir / "pwfile"
        pwfile.write_text(password + "\n")
        if user is not None:
            os.chown(pwfile, pwd.getpwnam(user).pw_uid, -1)
        pgdata = datadir / "data"
        _run([str(bindir / "initdb"), "-D", str(pgdata), "-U", "postgres",
              "--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}",
              "-E", "UTF8", "--locale=C", "--no-sync"], user)
        pwfile.unlink()
        port = free_port()
        opts = (f"-k {datadir} -p {port} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        _run([str(bindir / "pg_ctl"), "-D", str(pgdata), "-o", opts, "-l",
              str(datadir / "server.log"), "-w", "-t", "60", "start"], user)
        server = cls(datadir=datadir, port=port, password=password, _user=user)
        server._create_database(bindir)
        return server

    def _create_database(self, bindir: Path) -> None:
        admin = f"host={self.datadir} port={self.port} dbname=postgres user=postgres"
        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f'CREATE DATABASE "{DATABASE}"')
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def stop(self) -> None:
        bindir = server_bindir()
        try:
            _run([str(bindir / "pg_ctl"), "-D", str(self.datadir / "data"), "-m", "immediate",
                  "-w", "stop"], self._user)
        finally:
            shutil.rmtree(self.datadir, ignore_errors=True)


def _run(argv: list[str], user: str | None) -> None:
    # ``user=`` drops root for initdb/pg_ctl, which refuse to run as root.
    proc = subprocess.run(argv, user=user, capture_output=True, text=True, check=False,
                          cwd="/", timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"{Path(argv[0]).name} failed ({proc.returncode}): "
                           f"{proc.stderr.strip() or proc.stdout.strip()}")
