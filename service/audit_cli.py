"""`liaison-server audit ...`: operator commands on the transparency log."""

from __future__ import annotations

import typer

app = typer.Typer(help="Operator commands on the audit log.", no_args_is_help=True)
