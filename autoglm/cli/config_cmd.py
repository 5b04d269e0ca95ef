"""``autoglm config show``: the effective settings of each side and where each value came from.

Values come from a CLI flag, an environment variable, the YAML file named by ``AUTOGLM_CONFIG``
or the default (``contracts.settings``); secrets (tokens, passwords, credentials in URLs) are
masked. A wrong setting, file or key fails with the same one line the servers print.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

import typer

from autoglm.cli.common import console, print_json, usage

_URL_PASSWORD = re.compile(r"(://[^:/@]+:)([^@]+)(@)")


def masked(field: str, value: Any) -> Any:
    """A value safe to print: secrets become ``***`` (set) or ``""`` (unset)."""
    from contracts.settings import SECRET_HINTS

    name = field.lower()
    if any(h in name for h in SECRET_HINTS) and not name.endswith(("_file", "_timeout_s")):
        if isinstance(value, list):
            return [_mask_entry(str(v)) for v in value]
        return "***" if value else value
    if isinstance(value, str) and "://" in value:
        return _URL_PASSWORD.sub(r"\1***\3", value)
    return value


def _mask_entry(entry: str) -> str:
    # admin token entries may be "name:token": keep the name, hide the token
    return f"{entry.split(':', 1)[0]}:***" if ":" in entry else "***"


def effective(side: str) -> list[dict[str, Any]]:
    """Rows (env, value, origin, class, description) for every setting of one side."""
    from contracts.settings import AutoGLMSettings, section_fields

    section_fields(side)  # imports the side's settings modules
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for cls in AutoGLMSettings.registry:
        if cls.yaml_section != side:
            continue
        settings = cls()
        for name, field in cls.model_fields.items():
            env = f"{cls.env_prefix()}{name}".upper()
            if env in seen:
                continue
            seen.add(env)
            value = getattr(settings, name)
            rows.append({
                "env": env, "key": f"{side}.{name}", "value": masked(name, _plain(value)),
                "origin": cls.origin(name), "class": cls.__name__, "description": field.description or "",
            })
    return rows


def _plain(value: Any) -> Any:
    from pathlib import Path

    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple, set)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def show(
    side: Annotated[str | None, typer.Argument(help="cloud, edge or export (omit: all three).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list instead of a table.")] = False,
    changed: Annotated[bool, typer.Option("--changed", help="Only settings not at their default.")] = False,
) -> None:
    """Print the effective settings, where each came from (env, yaml, default), secrets masked."""
    from contracts.settings import SECTION_MODULES

    sides = list(SECTION_MODULES) if side is None else [side]
    for s in sides:
        if s not in SECTION_MODULES:
            usage(f"config show: unknown side {s!r}; choose one of: {', '.join(SECTION_MODULES)}")
    rows: list[dict[str, Any]] = []
    for s in sides:
        try:
            rows += effective(s)
        except ImportError as exc:  # a side that is not installed in this image
            if side is not None:
                usage(f"config show {s}: not installed here ({exc.name})")
    if changed:
        rows = [r for r in rows if r["origin"] != "default"]
    if as_json:
        print_json(rows)
        return
    from rich.table import Table

    table = Table("setting", "value", "from")
    for r in rows:
        value = r["value"]
        text = value if isinstance(value, str) else _json(value)
        table.add_row(r["env"], text, r["origin"])
    console.print(table)


def _json(value: Any) -> str:
    import json

    return json.dumps(value, ensure_ascii=False, default=str)


def register(app: typer.Typer) -> None:
    config = typer.Typer(help="Inspect the settings (env AUTOGLM_*, YAML file AUTOGLM_CONFIG).", no_args_is_help=True)
    config.command("show")(show)
    app.add_typer(config, name="config")
