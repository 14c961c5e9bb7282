"""The `liaison` command line (analysts, systems, auditors)."""

from __future__ import annotations

import typer

app = typer.Typer(help="Liaison client: enrol, send, read and audit.", no_args_is_help=True)


@app.callback()
def _root() -> None:
    """Liaison client."""


def main() -> None:
    app()
