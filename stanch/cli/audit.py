"""``stanch audit verify | tail | export | doubts | checkpoint | setup-postgres``.

These open the store named by the settings directly (the API need not be running), so an
auditor can check the chain on the machine that holds it.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, TextIO

import typer

from stanch.audit import AuditError, AuditStore, checkpoint_key, open_store
from stanch.audit.ocsf import to_ocsf
from stanch.cli._app import app
from stanch.cli._client import settings_or_exit
from stanch.config import Settings
from stanch.models import AuditRecord

audit_app = typer.Typer(name="audit", help="Inspect, verify and export the audit chain.",
                        no_args_is_help=True)
app.add_typer(audit_app)


class ExportFormat(StrEnum):
    ocsf = "ocsf"
    jsonl = "jsonl"


@contextmanager
def _store(settings: Settings) -> Iterator[AuditStore]:
    try:
        store = open_store(settings)
    except AuditError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    try:
        yield store
    finally:
        store.close()


def _line(r: AuditRecord) -> str:
    parts = [f"{r.seq:>7}", r.at.strftime("%Y-%m-%dT%H:%M:%SZ"), f"{r.type.value:<22}",
             f"actor={r.actor}"]
    for name in ("subject", "workflow_id", "action_id", "phase", "ticket"):
        value = getattr(r, name)
        if value:
            parts.append(f"{name}={value}")
    if r.alert_ids:
        parts.append(f"alerts={','.join(r.alert_ids)}")
    if r.reason:
        parts.append(f"reason={json.dumps(r.reason)}")
    return " ".join(parts)


@audit_app.command()
def verify() -> None:
    """Walk the chain; exit 1 naming the first broken record (edit, deletion, reordering,
    truncation after a checkpoint). Uses the configured checkpoint key when there is one."""
    settings = settings_or_exit()
    key = checkpoint_key(settings)
    with _store(settings) as store:
        report = store.verify(key)
    if not report.ok:
        typer.echo(f"BROKEN at seq {report.first_bad_seq}: {report.problem}", err=True)
        raise typer.Exit(1)
    sig = ("signatures verified" if report.signatures_checked
           else "signatures NOT verified: no audit.checkpoint_key configured")
    typer.echo(f"ok: {report.records} records, head seq {report.head_seq} "
               f"({report.head_hash[:16]}…), {report.checkpoints} checkpoints, {sig}")


@audit_app.command()
def tail(
    n: Annotated[int, typer.Option("-n", "--lines", min=0, help="How many records.")] = 20,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new records.")]
    = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON record per line.")] = False,
    interval: Annotated[float, typer.Option(help="Poll interval with --follow (s).")] = 1.0,
) -> None:
    """Print the newest records (and, with --follow, each new one as it is appended)."""
    settings = settings_or_exit()
    with _store(settings) as store:
        head, _ = store.head()
        after = max(0, head - n)
        while True:
            for r in store.query(after_seq=after, limit=1000):
                typer.echo(r.model_dump_json() if as_json else _line(r))
                after = r.seq
            if not follow:
                return
            sys.stdout.flush()
            time.sleep(interval)


def _parse_time(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not an ISO 8601 time", param_hint=name) from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _write(store: AuditStore, out: TextIO, fmt: ExportFormat, since: datetime | None,
           until: datetime | None) -> int:
    after, count = 0, 0
    while True:
        page = store.query(since=since, until=until, after_seq=after, limit=1000)
        for r in page:
            doc = to_ocsf(r) if fmt == ExportFormat.ocsf else r.model_dump(mode="json")
            out.write(json.dumps(doc, sort_keys=True) + "\n")
        count += len(page)
        if len(page) < 1000:
            return count
        after = page[-1].seq


@audit_app.command()
def export(
    fmt: Annotated[ExportFormat, typer.Option("--format", help="ocsf or jsonl (raw records).")]
    = ExportFormat.ocsf,
    since: Annotated[str | None, typer.Option(help="ISO 8601 time, inclusive.")] = None,
    until: Annotated[str | None, typer.Option(help="ISO 8601 time, exclusive.")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="File (default: stdout).")]
    = None,
) -> None:
    """Export records as JSON lines: OCSF events, or the raw chained records."""
    since_at, until_at = _parse_time(since, "--since"), _parse_time(until, "--until")
    settings = settings_or_exit()
    with _store(settings) as store:
        if out is None:
            _write(store, sys.stdout, fmt, since_at, until_at)
            return
        with out.open("w", encoding="utf-8") as fh:
            count = _write(store, fh, fmt, since_at, until_at)
        typer.echo(f"wrote {count} records to {out}", err=True)


@audit_app.command()
def doubts() -> None:
    """List actions in doubt: an intent was recorded but no result. Check the identity at
    its provider, then retry or roll back the containment."""
    settings = settings_or_exit()
    with _store(settings) as store:
        found = store.doubts()
    if not found:
        typer.echo("no actions in doubt")
        return
    typer.echo(f"{len(found)} action(s) in doubt (intent recorded, no result):")
    for r in found:
        action = r.data.get("action", "?")
        typer.echo(f"in doubt: seq={r.seq} at={r.at.strftime('%Y-%m-%dT%H:%M:%SZ')} "
                   f"action_id={r.action_id} action={action} subject={r.subject} "
                   f"workflow_id={r.workflow_id}")


@audit_app.command()
def checkpoint() -> None:
    """Sign the current chain head now with the configured key."""
    settings = settings_or_exit()
    key = checkpoint_key(settings)
    if key is None:
        typer.echo("error: no checkpoint key: set audit.checkpoint_key "
                   "[STANCH_AUDIT__CHECKPOINT_KEY]", err=True)
        raise typer.Exit(2)
    with _store(settings) as store:
        cp = store.checkpoint(key, datetime.now(UTC))
    typer.echo(f"checkpoint {cp.id}: head seq {cp.head_seq} ({cp.head_hash[:16]}…) signed")


@audit_app.command("setup-postgres")
def setup_postgres_cmd(
    worker_role: Annotated[str, typer.Option(help="Role limited to INSERT/SELECT on records.")]
    = "stanch_worker",
) -> None:
    """Create the PostgreSQL audit schema and the least-privilege worker role (run as owner)."""
    settings = settings_or_exit()
    if settings.audit.store != "postgres" or settings.audit.postgres_dsn is None:
        typer.echo("error: audit.store is not 'postgres' or audit.postgres_dsn is unset",
                   err=True)
        raise typer.Exit(2)
    from stanch.audit.postgres import setup_postgres

    setup_postgres(settings.audit.postgres_dsn.get_secret_value(),
                   settings.audit.postgres_schema, worker_role)
    typer.echo(f"schema {settings.audit.postgres_schema} ready; role {worker_role} may "
               f"INSERT and SELECT audit records")


__all__ = ["audit_app"]
