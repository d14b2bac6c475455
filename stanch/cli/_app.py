"""The root typer app; command modules attach to it on import (see ``stanch.cli``)."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="stanch",
    help="Stanch: graduated, reversible, audited identity containment on Temporal.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
