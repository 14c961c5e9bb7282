"""How `liaison-server` fails: one line naming the reason and the fix, a non-zero exit, never a
traceback.

Commands raise `SettingsError` (or `StartupError`, a kind of it) with a message that says what
to do; `OperatorGroup`, the class of every command group, prints it. Anything else escaping a
command is a bug, reported in one line too, with how to see the traceback (LIAISON_DEBUG=1).
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any, NoReturn

import typer
from typer import _click  # typer's own click: the type its groups are invoked with
from typer.core import TyperGroup

from ..config import SettingsError

__all__ = ["OperatorGroup", "fail", "one_line"]

#: Exit status of a usage or configuration error (click's own for bad options).
USAGE = 2
#: Exit status of an unexpected failure.
UNEXPECTED = 1


def one_line(e: BaseException) -> str:
    return " ".join(str(e).split())


def fail(message: str, code: int = USAGE) -> NoReturn:
    typer.echo(f"liaison-server: {' '.join(message.split())}", err=True)
    raise typer.Exit(code)


class OperatorGroup(TyperGroup):
    """A command group whose commands' errors come out as one line (see the module)."""

    def invoke(self, ctx: _click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException):  # usage errors, exits: typer's
            raise
        except SettingsError as e:
            fail(str(e))
        except (KeyboardInterrupt, EOFError):
            fail("interrupted", 130)
        except BrokenPipeError:  # the reader went (`| head`): nothing more to say to it
            with contextlib.suppress(OSError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(UNEXPECTED) from None
        except Exception as e:
            if os.environ.get("LIAISON_DEBUG"):
                raise
            fail(
                f"unexpected error ({type(e).__name__}: {one_line(e)[:300]}); "
                "LIAISON_DEBUG=1 shows the traceback: please report it",
                UNEXPECTED,
            )
