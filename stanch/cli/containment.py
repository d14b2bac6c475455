"""On-call and approver commands: ``status``, ``contain``, ``approve``, ``deny``, ``rollback``,
``resolve``, ``confirm`` and ``review ack``. They all go through the API, never to Temporal:
the API authenticates the caller and audits what it refuses.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any
from urllib.parse import quote

import typer
from rich.console import Console
from rich.table import Table

from stanch.cli._app import app
from stanch.cli._client import ApiOption, JsonOption, call, table_console

review_app = typer.Typer(help="Break-glass reviews: acknowledge after the fact.",
                         no_args_is_help=True)
app.add_typer(review_app, name="review")

_BASE = "/v1/containments"


class Level(StrEnum):
    reduce_scope = "reduce_scope"
    force_reauth = "force_reauth"
    rotate = "rotate"
    revoke = "revoke"


class Verdict(StrEnum):
    true_positive = "true_positive"
    false_positive = "false_positive"


def _path(workflow_id: str, *rest: str) -> str:
    return "/".join([_BASE, quote(workflow_id, safe=""), *(quote(r, safe="") for r in rest)])


def _console() -> Console:
    return table_console()


# --------------------------------------------------------------------------- status


@app.command()
def status(
    workflow_id: Annotated[str | None, typer.Argument(
        metavar="ID", help="A containment's workflow id; omit to list them.")] = None,
    state: Annotated[str | None, typer.Option(
        "--state", help="List only containments in this state (e.g. awaiting_approval).")] = None,
    limit: Annotated[int, typer.Option(help="List at most this many.")] = 50,
    api: ApiOption = None,
    as_json: JsonOption = False,
) -> None:
    """List containments, or show one: identity, level, steps, approvals, undo, reviews."""
    if workflow_id is None:
        params: dict[str, Any] = {"limit": limit}
        if state:
            params["status"] = state
        data = call(api, "GET", _BASE, params=params, as_json=as_json)
        if not as_json:
            _print_list(data.get("containments", []))
        return
    data = call(api, "GET", _path(workflow_id), as_json=as_json)
    if not as_json:
        _print_status(data)


def _print_list(items: list[dict[str, Any]]) -> None:
    console = _console()
    if not items:
        console.print("No containments.")
        return
    table = Table(title="Containments")
    table.add_column("workflow id", overflow="fold", no_wrap=True)
    table.add_column("identity kind")
    table.add_column("rung", justify="right")
    table.add_column("status")
    table.add_column("started")
    for it in items:
        table.add_row(it.get("workflow_id", ""), _s(it.get("identity_kind")),
                      _s(it.get("rung")), _s(it.get("status") or it.get("run_status")),
                      _s(it.get("started_at")))
    console.print(table)


def _print_status(st: dict[str, Any]) -> None:
    console = _console()
    identity = st.get("identity") or {}
    ref = identity.get("ref") or {}
    key = f"{ref.get('provider', '?')}:{ref.get('id', '?')}"
    name = identity.get("display_name") or key
    console.print(f"[bold]{st.get('workflow_id', '')}[/bold]")
    console.print(f"identity: {name} ({key}, {ref.get('kind', '?')})")
    console.print(f"state:    {st.get('state', '?')}")
    console.print(f"level:    {st.get('level') or 'none'} (rung {st.get('rung', 0)})")
    console.print(f"alerts:   {st.get('alerts_seen', 0)}")

    steps = Table(title="Steps")
    steps.add_column("step", overflow="fold", no_wrap=True)
    steps.add_column("action")
    steps.add_column("status")
    steps.add_column("awaiting", overflow="fold")
    steps.add_column("deadline", overflow="fold")
    steps.add_column("revert at", overflow="fold")
    steps.add_column("rollback cannot restore", overflow="fold")
    for s in st.get("steps", []):
        awaiting, deadline = _awaiting(s)
        status_text = _s(s.get("status"))
        if s.get("error"):
            status_text += f" ({s['error']})"
        elif s.get("note"):  # skipped or refused at plan time: say why
            status_text += f" ({s['note']})"
        if s.get("loss_gate") and awaiting:
            awaiting += f"; because {s['loss_gate']}"
        steps.add_row(s.get("step_id", ""), _s(s.get("action")), status_text, awaiting,
                      deadline, _s(s.get("revert_at")), ", ".join(s.get("loses") or []))
    console.print(steps)
    _print_declarations(console, st.get("steps", []))

    applied = st.get("applied") or []
    if applied:
        table = Table(title="Applied actions")
        table.add_column("step", overflow="fold", no_wrap=True)
        table.add_column("action")
        table.add_column("status")
        table.add_column("undo", overflow="fold")
        for a in applied:
            table.add_row(a.get("step_id", ""), _s(a.get("action")), _s(a.get("status")),
                          _undo(a))
        console.print(table)

    reviews = st.get("reviews") or []
    if reviews:
        table = Table(title="Break-glass reviews")
        table.add_column("review", overflow="fold", no_wrap=True)
        table.add_column("step", overflow="fold")
        table.add_column("requested by")
        table.add_column("reason", overflow="fold")
        table.add_column("acknowledged by")
        for r in reviews:
            table.add_row(r.get("review_id", ""), _s(r.get("step_id")), _s(r.get("requested_by")),
                          _s(r.get("reason")), _s(r.get("acknowledged_by")) or "pending")
        console.print(table)


def _print_declarations(console: Any, steps: list[dict[str, Any]]) -> None:
    """Per step, declared before it ran: what it changes and what undo restores."""
    for s in steps:
        if not (s.get("changes") or s.get("undo_restores")):
            continue
        console.print(f"{s.get('step_id', '')}:")
        for text in s.get("changes") or []:
            console.print(f"  changes: {text}", markup=False)
        for text in s.get("undo_restores") or []:
            console.print(f"  rollback restores: {text}", markup=False)
        for loss in s.get("loses") or []:
            console.print(f"  rollback cannot restore: {loss}", markup=False)


def _awaiting(step: dict[str, Any]) -> tuple[str, str]:
    """Who the step waits for (groups, approvals/quorum) and until when."""
    approval = step.get("approval")
    if not approval or step.get("status") != "awaiting_approval":
        return "", ""
    votes = approval.get("votes") or []
    policy = approval.get("policy") or {}
    approvals = sum(1 for v in votes if v.get("verdict") == "approve")
    denials = sum(1 for v in votes if v.get("verdict") == "deny")
    quorum = policy.get("quorum", 1)
    text = f"{', '.join(approval.get('groups') or [])} ({approvals}/{quorum} approvals"
    text += f", {denials} denials)" if denials else ")"
    return text, _s(approval.get("deadline"))


def _undo(applied: dict[str, Any]) -> str:
    if applied.get("irreversible"):
        return "none: irreversible"
    undo = applied.get("undo")
    if not undo:
        return "none"
    return str(undo.get("description") or undo.get("action") or undo)


def _s(value: Any) -> str:
    return "" if value is None else str(value)


# --------------------------------------------------------------------------- actions


@app.command()
def contain(
    identity: Annotated[str, typer.Argument(
        help="`provider:id` or an inventory alias (UPN, username, access key id …).")],
    level: Annotated[Level, typer.Option(help="Highest rung to apply.")],
    reason: Annotated[str, typer.Option(help="Why (required; audited).")],
    ticket: Annotated[str | None, typer.Option(help="Incident or ticket reference.")] = None,
    break_glass: Annotated[bool, typer.Option(
        "--break-glass", help="Skip approvals where the playbook allows it; opens a review.")
    ] = False,
    api: ApiOption = None,
    as_json: JsonOption = False,
) -> None:
    """Contain an identity by hand, up to LEVEL."""
    body = {"identity": identity, "level": level.value, "reason": reason, "ticket": ticket,
            "break_glass": break_glass}
    data = call(api, "POST", _BASE, body, as_json=as_json)
    if as_json:
        return
    queued = ", ".join(data.get("queued") or []) or "nothing new"
    typer.echo(f"containment {data.get('workflow_id')} for {data.get('identity')}")
    typer.echo(f"playbook: {data.get('playbook') or 'none matched'}; queued: {queued}"
               + (" (deduplicated)" if data.get("deduplicated") else ""))
    typer.echo(f"follow it with: stanch status {data.get('workflow_id')}")


def _decide(workflow_id: str, step: str, verdict: str, comment: str, api: str | None,
            as_json: bool) -> None:
    data = call(api, "POST", _path(workflow_id, "decisions"),
                {"step": step, "verdict": verdict, "comment": comment}, as_json=as_json)
    if as_json:
        return
    typer.echo(f"{verdict} recorded on {data.get('step_id', step)}: step is "
               f"{data.get('status')} ({data.get('approvals', 0)}/{data.get('quorum', '?')} "
               f"approvals, {data.get('denials', 0)}/{data.get('deny_quorum', '?')} denials)")


@app.command()
def approve(
    workflow_id: Annotated[str, typer.Argument(metavar="ID")],
    step: Annotated[str, typer.Argument(help="Step id, as `stanch status ID` shows it.")],
    comment: Annotated[str, typer.Option(help="Why; recorded with the vote.")] = "",
    api: ApiOption = None,
    as_json: JsonOption = False,
) -> None:
    """Approve a step that waits for approval."""
    _decide(workflow_id, step, "approve", comment, api, as_json)


@app.command()
def deny(
    workflow_id: Annotated[str, typer.Argument(metavar="ID")],
    step: Annotated[str, typer.Argument(help="Step id, as `stanch status ID` shows it.")],
    comment: Annotated[str, typer.Option(help="Why; recorded with the vote.")] = "",
    api: ApiOption = None,
    as_json: JsonOption = False,
) -> None:
    """Deny a step that waits for approval."""
    _decide(workflow_id, step, "deny", comment, api, as_json)


@app.command()
def rollback(
    workflow_id: Annotated[str, typer.Argument(metavar="ID")],
    reason: Annotated[str, typer.Option(help="Why (required; audited).")],
    api: ApiOption = None,
    as_json: JsonOption = False,
) -> None:
    """Undo every applied step of a containment, newest first, and cancel pending ones."""
    data = call(api, "POST", _path(workflow_id, "rollback"), {"reason": reason},
                as_json=as_json)
    if as_json:
        return
    steps = data.get("steps") or []
    if not steps:
        typer.echo("nothing to undo")
        return
    table = Table(title=f"Rollback of {workflow_id}")
    table.add_column("step", overflow="fold", no_wrap=True)
    table.add_column("action")
    table.add_column("outcome")
    table.add_column("detail", overflow="fold")
    for s in steps:
        table.add_row(s.get("step_id", ""), _s(s.get("action")), _s(s.get("outcome")),
                      _s(s.get("detail")))
    _console().print(table)


@app.command()
def resolve(
    workflow_id: Annotated[str, typer.Argument(metavar="ID")],
    verdict: Annotated[Verdict, typer.Option(help="Was the alert right?")],
    reason: Annotated[str, typer.Option(help="Why; audited.")] = "",
    api: ApiOption = None,
    as_json: JsonOption = False,
) -> None:
    """Close a containment as a true or false positive (a false positive is rolled back)."""
    data = call(api, "POST", _path(workflow_id, "resolve"),
                {"verdict": verdict.value, "reason": reason}, as_json=as_json)
    if not as_json:
        typer.echo(f"{workflow_id}: {verdict.value}; state {data.get('state')}")


@app.command()
def confirm(
    workflow_id: Annotated[str, typer.Argument(metavar="ID")],
    step: Annotated[str, typer.Argument(help="An applied step with a revert timer.")],
    reason: Annotated[str, typer.Option(help="Why it should stay; audited.")] = "",
    api: ApiOption = None,
    as_json: JsonOption = False,
) -> None:
    """Keep a time-bound step: cancel its automatic revert."""
    data = call(api, "POST", _path(workflow_id, "confirm"), {"step": step, "reason": reason},
                as_json=as_json)
    if not as_json:
        typer.echo(f"confirmed {data.get('step_id', step)}: {data.get('status')}, "
                   f"revert at {data.get('revert_at') or 'never'}")


@review_app.command("ack")
def review_ack(
    workflow_id: Annotated[str, typer.Argument(metavar="ID")],
    review_id: Annotated[str, typer.Argument(metavar="REVIEW_ID")],
    comment: Annotated[str, typer.Option(help="What the review found.")] = "",
    api: ApiOption = None,
    as_json: JsonOption = False,
) -> None:
    """Acknowledge a break-glass review."""
    data = call(api, "POST", _path(workflow_id, "reviews", review_id, "ack"),
                {"comment": comment}, as_json=as_json)
    if not as_json:
        typer.echo(f"review {data.get('review_id', review_id)} acknowledged by "
                   f"{data.get('acknowledged_by')}")
