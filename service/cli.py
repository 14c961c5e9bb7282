"""The `liaison-server` command line (operators)."""

from __future__ import annotations

import typer

app = typer.Typer(help="Liaison server: init, migrate, run.", no_args_is_help=True)


@app.callback()
def _root() -> None:
    """Liaison server."""


def main() -> None:
    app()
