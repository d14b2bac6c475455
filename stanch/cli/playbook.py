"""``stanch playbook lint | simulate | test | schema``: author and check playbooks offline.

Nothing here touches a provider, Temporal or the audit log: simulate calls the same pure
planner the containment workflow calls, so what it shows is what would run.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from stanch.capabilities import LOSSES, adapter_type, declaration, supports
from stanch.cli._app import app
from stanch.cli._client import settings_or_exit
from stanch.inventory import Inventory, InventoryError, YamlInventory, with_provider_type
from stanch.models import Action, Alert, PlanState
from stanch.playbook.errors import LoadError
from stanch.playbook.fixtures import find_fixtures, run_fixtures, summarize
from stanch.playbook.loader import lint as lint_paths
from stanch.playbook.loader import load_playbooks
from stanch.playbook.planner import Explanation, explain
from stanch.playbook.schema import Playbook, format_duration
from stanch.playbook.simulate import SimulationError, read_alerts, resolve_identities

playbook_app = typer.Typer(
    help="Lint, simulate and test containment playbooks (no side effects).",
    no_args_is_help=True,
)
app.add_typer(playbook_app, name="playbook")

_out = Console(highlight=False, soft_wrap=True)
_err = Console(stderr=True, highlight=False, soft_wrap=True)

JSON_OPT = typer.Option(False, "--json", help="Machine-readable JSON on stdout.")
PLAYBOOKS_OPT = typer.Option(
    None, "--playbooks", "-p", help="Playbook files or directories (default: settings)."
)
INVENTORY_OPT = typer.Option(
    None, "--inventory", "-i", help="Inventory files or directories (default: settings)."
)


@playbook_app.command("lint")
def lint_cmd(
    paths: list[Path] = typer.Argument(None, help="Files or directories (default: settings)."),
    as_json: bool = JSON_OPT,
) -> None:
    """Check playbooks; print one `file:line: field: message` per problem, exit 1 on any."""
    targets = paths or [settings_or_exit().playbooks_dir]
    errors = lint_paths(targets)
    if as_json:
        typer.echo(json.dumps({"ok": not errors, "errors": [e.to_dict() for e in errors]},
                              indent=2))
    else:
        for error in errors:
            typer.echo(str(error))
        if not errors:
            _err.print(f"[green]ok[/]: {', '.join(str(t) for t in targets)}")
        else:
            _err.print(f"[red]{len(errors)} error(s)[/]")
    if errors:
        raise typer.Exit(1)


@playbook_app.command("simulate")
def simulate_cmd(
    alert_file: Path = typer.Argument(..., help="Normalized Alert JSON, or with --source a raw "
                                      "payload of that source."),
    source: str | None = typer.Option(
        None, "--source", "-s", help="Treat the file as this source's raw payload."
    ),
    identity: str | None = typer.Option(
        None, "--identity", help="Plan for this identity (`provider:id`) instead of the "
        "alert's mentions."
    ),
    state_file: Path | None = typer.Option(
        None, "--state", help="PlanState JSON: what the containment already did."
    ),
    playbooks_path: list[Path] | None = PLAYBOOKS_OPT,
    inventory_path: list[Path] | None = INVENTORY_OPT,
    as_json: bool = JSON_OPT,
) -> None:
    """Show which playbook matches, the planned ladder and who each step waits for."""
    playbooks, inventory = _load(playbooks_path, inventory_path)
    state = _read_state(state_file)
    settings = settings_or_exit()
    try:
        alerts = read_alerts(alert_file, source, datetime.now(UTC))
        runs = []
        for alert in alerts:
            for r in resolve_identities(alert, inventory, identity):
                if r.identity is not None:  # fitted to (and declared for) its provider type
                    r = replace(r, identity=with_provider_type(r.identity, settings))
                runs.append((alert, r, explain(alert, r.identity, playbooks, state)
                             if r.identity else None))
    except SimulationError as exc:
        _fail(str(exc))
    if as_json:
        typer.echo(json.dumps([_run_json(a, r.mention, r.identity, e) for a, r, e in runs],
                              indent=2))
        return
    shown: set[str] = set()
    for alert in alerts:
        if not any(a is alert for a, _, _ in runs):
            _print_alert(alert)
            _out.print("  [yellow]the alert names no identity[/]\n")
    for alert, resolution, explanation in runs:
        if alert.id not in shown:
            shown.add(alert.id)
            _print_alert(alert)
        if resolution.identity is None or explanation is None:
            m = resolution.mention
            what = f"{m.name_type.value} {m.name}" if m else "?"
            _out.print(f"[yellow]unresolved[/] {escape(what)}: not in the inventory\n")
            continue
        _print_explanation(resolution, explanation)


@playbook_app.command("test")
def test_cmd(
    directory: Path | None = typer.Argument(
        None, help="Fixture directory (default: <playbooks_dir>/tests)."
    ),
    playbooks_path: list[Path] | None = PLAYBOOKS_OPT,
    inventory_path: list[Path] | None = INVENTORY_OPT,
    as_json: bool = JSON_OPT,
) -> None:
    """Run `*.alert.json` → `*.expected.yaml` fixtures; exit 1 with a diff on any mismatch.
    An `inventory.yaml` beside the fixtures is loaded with the inventory (identities only
    the fixtures use, e.g. the AWS examples)."""
    folder = directory or settings_or_exit().playbooks_dir / "tests"
    if inventory_path is None and (folder / "inventory.yaml").is_file():
        inventory_path = [*settings_or_exit().inventory_paths, folder / "inventory.yaml"]
    playbooks, inventory = _load(playbooks_path, inventory_path)
    if not folder.is_dir():
        _fail(f"{folder}: no such directory")
    results = run_fixtures(folder, playbooks, inventory)
    covered = {r.playbook for r in results if r.playbook}
    untested = sorted(pb.name for pb in playbooks if pb.name not in covered)
    failed = [r for r in results if not r.ok]
    if as_json:
        typer.echo(json.dumps({
            "passed": len(results) - len(failed),
            "failed": len(failed),
            "untested_playbooks": untested,
            "results": [{"name": r.name, "playbook": r.playbook, "ok": r.ok,
                         "detail": r.detail} for r in results],
        }, indent=2))
    else:
        for r in results:
            mark = "[green]PASS[/]" if r.ok else "[red]FAIL[/]"
            _out.print(f"{mark} {escape(r.name)}")
            if r.detail:
                typer.echo(r.detail.rstrip("\n"))
        for name in untested:
            _err.print(f"[yellow]warning[/]: playbook {name} has no fixture")
        colour = "red" if failed or not results else "green"
        _err.print(f"[{colour}]{len(results) - len(failed)} passed, {len(failed)} failed[/]")
    if failed or not find_fixtures(folder):
        raise typer.Exit(1)


@playbook_app.command("schema")
def schema_cmd() -> None:
    """Print the playbook JSON Schema: every field with its description."""
    typer.echo(json.dumps(Playbook.model_json_schema(by_alias=True), indent=2))


# --------------------------------------------------------------------------- helpers



def _load(
    playbooks_path: list[Path] | None, inventory_path: list[Path] | None
) -> tuple[list[Playbook], Inventory]:
    settings = None if playbooks_path and inventory_path else settings_or_exit()
    pb_paths = playbooks_path or [settings.playbooks_dir] if settings else playbooks_path or []
    inv_paths = inventory_path or (settings.inventory_paths if settings else [])
    try:
        return load_playbooks(pb_paths), YamlInventory.from_paths(inv_paths)
    except (LoadError, InventoryError) as err:
        for error in err.errors:
            typer.echo(str(error), err=True)
        raise typer.Exit(1) from None


def _read_state(path: Path | None) -> PlanState:
    if path is None:
        return PlanState()
    try:
        return PlanState.model_validate_json(path.read_bytes())
    except OSError as exc:
        _fail(f"{path}: cannot read: {exc.strerror or exc}")
    except ValueError as exc:
        _fail(f"{path}: not a PlanState: {exc}")


def _fail(message: str) -> NoReturn:
    typer.echo(message, err=True)
    raise typer.Exit(1)


def _print_alert(alert: Alert) -> None:
    _out.print(
        f"[bold]alert[/] {alert.id}  {escape(alert.title)}\n"
        f"  source {alert.source}  category {alert.category.value}  "
        f"severity {alert.severity.value}  confidence {alert.confidence.value}"
    )


def _print_explanation(resolution: Any, ex: Explanation) -> None:
    ident = resolution.identity
    via = (
        f" (from {resolution.mention.name_type.value} {escape(resolution.mention.name)})"
        if resolution.mention else ""
    )
    facts = "  ".join(
        f"{k} {v}" for k, v in (
            ("owner", ident.owner), ("custodian", ident.custodian),
            ("env", ident.environment),
            ("criticality", ident.criticality.value if ident.criticality else None),
        ) if v
    )
    _out.print(f"[bold]identity[/] {ident.ref.key} ({ident.ref.kind.value}){via}  {facts}")
    if ex.plan.playbook is None:
        _out.print(f"[yellow]no playbook matches[/]: {escape(ex.plan.reason)}")
        for c in ex.candidates:
            _out.print(f"  {c.playbook}: {escape(c.reason)}", style="dim")
        _out.print()
        return
    reason = ex.plan.reason.removeprefix(f"{ex.plan.playbook}: ")
    _out.print(f"[bold]playbook[/] {ex.plan.playbook}: {escape(reason)}")
    for d in ex.decisions:
        if d.step is None:
            _out.print(f"  - {d.step_id}  skipped: {escape(d.reason)}", style="dim")
            continue
        if d.step.skipped is not None:
            word = "refused" if d.step.refused else "skipped"
            _out.print(f"  [yellow]✗[/] [bold]{d.step_id}[/]  {word}: "
                       f"{escape(d.step.skipped)}")
            continue
        mark = "[yellow]⏸[/]" if d.step.approval else "[green]▶[/]"
        line = f"  {mark} [bold]{d.step_id}[/]  {escape(_gate(d.step, d.reason))}"
        if d.step.revert_after:
            line += f"; reverts after {format_duration(d.step.revert_after)}"
        _out.print(line)
        if d.step.notify:
            _out.print(f"      notify {', '.join(d.step.notify)}", style="dim")
        _print_declaration(d.step, ident)
    _out.print()


def _print_declaration(step: Any, identity: Any) -> None:
    """What the step changes, what rollback restores and what it cannot (declared)."""
    adapter = adapter_type(identity.ref.provider, {identity.ref.provider:
                                                   identity.provider_type}
                           if identity.provider_type else None)
    if adapter and step.action is not Action.notify and not supports(
            adapter, step.action, identity.ref.kind):
        reason = declaration(adapter, step.action).reason
        _out.print(f"      [red]not supported on {adapter}[/]: {escape(reason)}")
        return
    for text in step.changes:
        _out.print(f"      changes: {escape(text)}")
    for text in step.undo_restores:
        _out.print(f"      rollback restores: {escape(text)}", style="dim")
    for loss in step.loses:
        _out.print(f"      [red]rollback cannot restore[/]: {loss}: "
                   f"{escape(LOSSES.get(loss, loss))}")
    if step.loss_gate:
        _out.print(f"      [yellow]needs approval because[/] {escape(step.loss_gate)}")


def _gate(step: Any, reason: str) -> str:
    a = step.approval
    if a is None:
        return reason
    text = (f"waits for {a.quorum} of {', '.join(a.groups)} within "
            f"{format_duration(a.deadline)}, then {a.on_timeout.value}")
    for stage in a.escalation:
        text += f"; at {format_duration(stage.after)} also {', '.join(stage.groups)}"
    if step.irreversible:
        text += " (irreversible)"
    return text


def _run_json(alert: Alert, mention: Any, identity: Any, ex: Explanation | None) -> dict[str, Any]:
    return {
        "alert_id": alert.id,
        "mention": mention.model_dump(mode="json") if mention else None,
        "identity": identity.ref.key if identity else None,
        "playbook": ex.plan.playbook if ex else None,
        "plan": ex.plan.model_dump(mode="json") if ex else None,
        "steps": [summarize(s) for s in ex.plan.steps] if ex else [],
        "decisions": [
            {"step_id": d.step_id, "planned": d.planned, "reason": d.reason}
            for d in ex.decisions
        ] if ex else [],
        "candidates": [c.model_dump(mode="json") for c in ex.candidates] if ex else [],
    }
