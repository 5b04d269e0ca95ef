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

    words = set(field.lower().split("_"))
    secret_words = set(SECRET_HINTS) | {f"{h}s" for h in SECRET_HINTS}
    if words & secret_words and not field.endswith("_file") and isinstance(value, (str, list)):
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
            rows.append(
                {
                    "env": env,
                    "key": f"{side}.{name}",
                    "value": masked(name, _plain(value)),
                    "origin": cls.origin(name),
                    "class": cls.__name__,
                    "description": field.description or "",
                }
            )
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


# -- the settings tables in the area documents ----------------------------------------------------

DOCS_GLOB = "docs/arch/*.md"
_BLOCK = re.compile(
    r"(<!-- settings:(?P<name>\w+):start -->\n)(?P<body>.*?)(<!-- settings:(?P=name):end -->)", re.S
)


def all_settings_classes() -> list[type[Any]]:
    """Every settings class of every side (imports their modules), in registry order."""
    from contracts.settings import SECTION_MODULES, AutoGLMSettings, section_fields

    for side in SECTION_MODULES:
        section_fields(side)
    return list(AutoGLMSettings.registry)


def _default_text(field: Any) -> str:
    import json
    import os
    from pathlib import Path

    saved = os.environ.pop("AUTOGLM_DATA_DIR", None)  # defaults as documented: under ./.autoglm
    try:
        value = field.get_default(call_default_factory=True)
    finally:
        if saved is not None:
            os.environ["AUTOGLM_DATA_DIR"] = saved
    if isinstance(value, Path):
        return str(value)
    if value is None:
        return "none"
    if isinstance(value, str):
        return json.dumps(value) if value == "" else value
    return json.dumps(_plain(value), ensure_ascii=False)


def settings_table(cls: type[Any]) -> str:
    """Markdown table of one class: variable (YAML key), default, description."""
    section = cls.yaml_section
    lines = [
        f"`{cls.__name__}` (`{cls.__module__}`): environment variable, or key in the `{section}:` "
        "section of the `AUTOGLM_CONFIG` file.",
        "",
        "| variable / YAML key | default | description |",
        "|---|---|---|",
    ]
    for name, field in cls.model_fields.items():
        env = f"{cls.env_prefix()}{name}".upper()
        desc = (field.description or "").replace("|", "\\|").replace("\n", " ")
        default = _default_text(field).replace("|", "\\|")
        lines.append(f"| `{env}` / `{name}` | `{default}` | {desc} |")
    return "\n".join(lines) + "\n"


def render_settings_blocks(text: str) -> str:
    """Replace every ``<!-- settings:CLASS:start -->…<!-- settings:CLASS:end -->`` block in ``text``."""
    classes = {c.__name__: c for c in all_settings_classes()}

    def repl(m: re.Match[str]) -> str:
        cls = classes.get(m.group("name"))
        if cls is None:
            return m.group(0)
        return f"{m.group(1)}{settings_table(cls)}{m.group(4)}"

    return _BLOCK.sub(repl, text)


def documented_classes(texts: list[str]) -> set[str]:
    return {m.group("name") for t in texts for m in _BLOCK.finditer(t)}


def repo_root() -> Any:
    from pathlib import Path

    return Path(__file__).resolve().parents[2]


def docs(
    check: Annotated[
        bool, typer.Option("--check", help="Exit 1 if a table differs or a class has none.")
    ] = False,
) -> None:
    """Regenerate the settings tables of the area documents (docs/arch/*.md) from the classes."""
    from autoglm.cli.common import fail

    files = sorted(repo_root().glob(DOCS_GLOB))
    if not files:
        fail("docs/arch not found: the settings tables live in a source checkout")
    stale = []
    texts = []
    for path in files:
        old = path.read_text(encoding="utf-8")
        new = render_settings_blocks(old)
        texts.append(new)
        if new != old:
            stale.append(path.name)
            if not check:
                path.write_text(new, encoding="utf-8")
    missing = sorted({c.__name__ for c in all_settings_classes()} - documented_classes(texts))
    if missing:
        fail(
            f"settings classes without a table in {DOCS_GLOB}: {', '.join(missing)} "
            "(add <!-- settings:NAME:start --><!-- settings:NAME:end --> to the area document)"
        )
    if check and stale:
        fail(f"settings tables out of date in {', '.join(stale)}: run `autoglm config docs`")
    console.print(
        f"{'checked' if check else 'rendered'} {len(files)} documents"
        + (f"; updated {', '.join(stale)}" if stale and not check else "")
    )


def register(app: typer.Typer) -> None:
    config = typer.Typer(
        help="Inspect the settings (env AUTOGLM_*, YAML file AUTOGLM_CONFIG).", no_args_is_help=True
    )
    config.command("show")(show)
    config.command("docs")(docs)
    app.add_typer(config, name="config")
