"""Shared CLI plumbing: every error is one line on stderr and an exit code, never a traceback.

Exit codes: 2 for usage errors (a bad flag, argument, setting, YAML file, path or data file the user
named), 1 for failures (the controller refused, a bundle did not load, a node is unreachable).
Output: tables on a terminal; when stdout is not a terminal nothing is truncated (rich gets a
wide console) and ``--json`` prints machine-readable documents.
"""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

import typer
from rich.console import Console

try:  # typer >= 0.26 vendors click as typer._click; its exceptions are what the parser raises
    from typer._click import exceptions as click_exc
except ImportError:  # pragma: no cover - older typer on the real click
    from click import exceptions as click_exc  # type: ignore[no-redef]
USAGE = 2
FAILURE = 1


PIPED_RULE_WIDTH = 100


class PipedConsole(Console):
    """Console for a pipe or file: tables and lines are never wrapped or truncated (a huge width),
    but a rule (a section divider) is drawn ``PIPED_RULE_WIDTH`` wide instead of that width."""

    def rule(
        self, title: Any = "", *, characters: str = "─", style: Any = "rule.line", align: Any = "center"
    ) -> None:
        from rich.rule import Rule

        self.print(Rule(title=title, characters=characters, style=style, align=align), width=PIPED_RULE_WIDTH)


def _console(stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    if stream.isatty():
        return Console(stderr=stderr)
    return PipedConsole(stderr=stderr, width=100_000, soft_wrap=True)  # piped: never wrap or truncate


console = _console()
err_console = _console(stderr=True)


def one_line(message: object) -> str:
    return " ".join(str(message).split()) or "unknown error"


def print_error(message: object) -> None:
    text = one_line(message)
    if sys.stderr.isatty():
        sys.stderr.write(f"\x1b[1;31merror:\x1b[0m {text}\n")
    else:
        sys.stderr.write(f"error: {text}\n")
    sys.stderr.flush()


def fail(message: str, code: int = FAILURE) -> NoReturn:
    """Print one error line and exit (``code``: ``USAGE`` for the user's input, ``FAILURE`` otherwise)."""
    print_error(message)
    raise typer.Exit(code)


def usage(message: str) -> NoReturn:
    fail(message, USAGE)


def print_json(doc: Any) -> None:
    """A JSON document on stdout (plain, no colour codes when piped)."""
    text = json.dumps(doc, ensure_ascii=False, default=str, indent=2)
    if sys.stdout.isatty():
        console.print_json(text)
    else:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()


def _usage_line(exc: click_exc.UsageError) -> str:
    ctx = exc.ctx
    where = ctx.command_path if ctx is not None else "autoglm"
    return f"{where}: {exc.format_message()}"


def run_cli(app: typer.Typer, args: list[str] | None = None) -> None:
    """Run the app with one-line errors: click usage errors, settings errors and domain errors."""
    from contracts.errors import AutoGLMError
    from contracts.settings import ConfigError

    try:
        code = app(args=args, standalone_mode=False)
    except click_exc.NoArgsIsHelpError as exc:
        sys.stdout.write(exc.ctx.get_help() + "\n")
        sys.exit(0)
    except click_exc.UsageError as exc:
        print_error(_usage_line(exc))
        sys.exit(USAGE)
    except click_exc.ClickException as exc:
        print_error(exc.format_message())
        sys.exit(exc.exit_code or FAILURE)
    except typer.Abort:
        print_error("aborted")
        sys.exit(130)
    except AutoGLMError as exc:  # 400 (a setting, the user's data): usage; anything else: a failure
        print_error(exc.message)
        sys.exit(USAGE if isinstance(exc, ConfigError) or exc.status == 400 else FAILURE)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError) as exc:
        print_error(exc)
        sys.exit(USAGE)
    except KeyboardInterrupt:
        sys.exit(130)
    except OSError as exc:
        print_error(exc)
        sys.exit(FAILURE)
    sys.exit(code if isinstance(code, int) else 0)
