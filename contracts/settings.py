"""Settings base: pydantic-settings with an env prefix per side and an optional YAML file.

Precedence (highest first): explicit keyword arguments (CLI flags), environment variables
(``AUTOGLM_CLOUD_*`` / ``AUTOGLM_EDGE_*`` / ``AUTOGLM_EXPORT_*``), the YAML file named by
``AUTOGLM_CONFIG`` (read by pydantic-settings' own ``YamlConfigSettingsSource``), then the
defaults. Every field carries a ``description``; ``autoglm config show`` prints the effective
values and where each came from, and the area documents list them (checked by a test).

The YAML file is a mapping of sections (``cloud:``, ``edge:``, ``export:``); each section holds
the fields of every settings class of that side. Mistakes are errors, never ignored: a missing
file, invalid YAML, a top level that is not a mapping, an unknown section or an unknown key (a
section is checked against all its classes, so ``edge.http_prot`` fails even when only the sync
settings are loaded). Every error is a :class:`ConfigError` with one line naming the variable,
file and key, or flag; the CLI prints it and exits 2.
"""

from __future__ import annotations

import difflib
import importlib
import json
import os
import re
import types
import typing
from pathlib import Path
from typing import Any, ClassVar

import yaml
from pydantic import ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    YamlConfigSettingsSource,
)

from contracts.errors import AutoGLMError

CONFIG_ENV = "AUTOGLM_CONFIG"

# The settings modules of each YAML section. A section's keys are checked against the fields of
# all its classes; the modules are imported (by name, only when that section is loaded) so that
# the check does not depend on which classes the running process happened to import. They are the
# side's own modules: an edge process never imports the cloud's.
SECTION_MODULES: dict[str, tuple[str, ...]] = {
    "cloud": ("cloud.settings", "cloud.sync.settings", "cloud.ui.settings", "cloud.loop.settings"),
    "edge": ("edge.settings", "edge.sync.settings", "edge.control.settings", "edge.agent.settings"),
    "export": ("export.settings",),
}
SECRET_HINTS = ("token", "password", "secret")  # field names whose values `config show` masks


class ConfigError(AutoGLMError):
    """A setting, the YAML file or a flag is wrong. One line naming the variable, key or flag."""

    status = 400
    code = "bad_config"


def config_path() -> Path | None:
    """The YAML file named by ``AUTOGLM_CONFIG`` (None when unset); a missing file is an error."""
    cfg = os.environ.get(CONFIG_ENV, "").strip()
    if not cfg:
        return None
    path = Path(cfg)
    if not path.is_file():
        raise ConfigError(f"{CONFIG_ENV}={cfg}: no such file")
    return path


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{CONFIG_ENV}={path}: invalid YAML{where}: {problem}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{CONFIG_ENV}={path}: cannot read: {exc}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(
            f"{CONFIG_ENV}={path}: the top level must be a mapping of sections "
            f"({', '.join(SECTION_MODULES)}), not a {type(loaded).__name__}"
        )
    for section, body in loaded.items():
        if section not in SECTION_MODULES:
            raise ConfigError(
                f"{CONFIG_ENV}={path}: unknown section "
                f"{section!r}{_did_you_mean(str(section), SECTION_MODULES)}; "
                f"sections are {', '.join(SECTION_MODULES)}"
            )
        if body is not None and not isinstance(body, dict):
            raise ConfigError(
                f"{CONFIG_ENV}={path}: section {section!r} must be a mapping, not a {type(body).__name__}"
            )
    return loaded


def _did_you_mean(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def section_fields(section: str) -> dict[str, type[AutoGLMSettings]]:
    """Every field name of a YAML section -> the class that declares it (imports the section's modules)."""
    for module in SECTION_MODULES.get(section, ()):
        importlib.import_module(module)
    out: dict[str, type[AutoGLMSettings]] = {}
    for cls in AutoGLMSettings.registry:
        if cls.yaml_section == section:
            for name in cls.model_fields:
                out.setdefault(name, cls)
    return out


def yaml_section_data(section: str) -> tuple[Path | None, dict[str, Any]]:
    """(file, the section's mapping) of ``AUTOGLM_CONFIG``, checked: unknown keys are errors."""
    path = config_path()
    if path is None:
        return None, {}
    data = _read_yaml(path).get(section) or {}
    known = section_fields(section)
    for key in data:
        if key not in known:
            raise ConfigError(
                f"{CONFIG_ENV}={path}: unknown key {section}.{key}{_did_you_mean(str(key), known)}"
            )
    return path, data


def _is_list(annotation: Any) -> bool:
    return any(typing.get_origin(a) in (list, set, tuple, frozenset) for a in _flatten(annotation))


def _is_dict(annotation: Any) -> bool:
    return any(typing.get_origin(a) is dict for a in _flatten(annotation))


def _flatten(annotation: Any) -> list[Any]:
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [x for a in args for x in _flatten(a)]
    return [annotation]


class _EnvSource(EnvSettingsSource):
    """Environment variables; list settings also take ``a,b,c`` and dict settings ``k=v,k2=v2``
    besides JSON, and a value that parses as neither is a :class:`ConfigError` naming the variable."""

    def decode_complex_value(self, field_name: str, field: FieldInfo, value: Any) -> Any:
        try:
            return super().decode_complex_value(field_name, field, value)
        except ValueError:
            pass
        env = f"{self.env_prefix}{field_name}".upper()
        text = str(value).strip()
        if _is_list(field.annotation) and not text.startswith(("[", "{")):
            return [p.strip() for p in text.split(",") if p.strip()]
        if _is_dict(field.annotation) and not text.startswith(("[", "{")):
            pairs = [p for p in text.split(",") if p.strip()]
            if all("=" in p for p in pairs):
                return {k.strip(): v.strip() for k, v in (p.split("=", 1) for p in pairs)}
        shape = (
            "a JSON object or k=v,k2=v2" if _is_dict(field.annotation) else "JSON or a comma-separated list"
        )
        raise ConfigError(f"{env}={_short(value)}: cannot parse; expected {shape}")


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value) if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


class AutoGLMSettings(BaseSettings):
    """Base class. Subclasses set ``model_config`` with their env prefix and ``yaml_section``."""

    yaml_section: ClassVar[str] = ""
    model_config = SettingsConfigDict(extra="ignore", validate_default=True)
    registry: ClassVar[list[type[AutoGLMSettings]]] = []

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.__dict__.get("__autoglm_partial__"):
            AutoGLMSettings.registry.append(cls)

    @classmethod
    def partial(cls, *names: str) -> Any:
        """Settings with only these fields of this class, read from the same sources: a client
        command validates what it uses, so a bad server-only setting cannot break it."""
        namespace: dict[str, Any] = {
            "__annotations__": {n: cls.model_fields[n].annotation for n in names},
            "__autoglm_partial__": True,
            "__module__": cls.__module__,
            "yaml_section": cls.yaml_section,
            "model_config": SettingsConfigDict(**cls.model_config),  # type: ignore[typeddict-item]
            **{n: cls.model_fields[n] for n in names},
        }
        partial_cls = type(f"{cls.__name__}Partial", (AutoGLMSettings,), namespace)
        return partial_cls()

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise ConfigError(type(self).explain(exc, values)) from None
        except SettingsError as exc:
            raise ConfigError(type(self)._explain_settings_error(exc)) from None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, _EnvSource(settings_cls)]
        path, data = yaml_section_data(cls.yaml_section)
        if path is not None and data:
            sources.append(
                YamlConfigSettingsSource(settings_cls, yaml_file=path, yaml_config_section=cls.yaml_section)
            )
        return (*sources, file_secret_settings)

    # -- names and origins -----------------------------------------------------------------------

    @classmethod
    def env_prefix(cls) -> str:
        return str(cls.model_config.get("env_prefix", ""))

    @classmethod
    def env_names(cls) -> dict[str, str]:
        """Map of environment variable name -> field name (used by the manifest drift test)."""
        return {f"{cls.env_prefix()}{name}".upper(): name for name in cls.model_fields}

    @classmethod
    def describe(cls) -> list[tuple[str, str, str]]:
        """(env var, default, description) for each setting."""
        rows = []
        for name, field in cls.model_fields.items():
            default = field.get_default(call_default_factory=True)
            rows.append((f"{cls.env_prefix()}{name}".upper(), repr(default), field.description or ""))
        return rows

    @classmethod
    def origin(cls, field: str, init: dict[str, Any] | None = None) -> str:
        """Where a field's value comes from: ``flag``, ``env AUTOGLM_…``, ``yaml FILE section.key``
        or ``default``."""
        if init and field in init:
            return "flag"
        env = f"{cls.env_prefix()}{field}".upper()
        if any(k.upper() == env for k in os.environ):
            return f"env {env}"
        path = os.environ.get(CONFIG_ENV, "").strip()
        if path and Path(path).is_file():
            try:
                section = _read_yaml(Path(path)).get(cls.yaml_section) or {}
            except ConfigError:
                section = {}
            if field in section:
                return f"yaml {path} {cls.yaml_section}.{field}"
        return "default"

    @classmethod
    def explain(cls, exc: ValidationError, init: dict[str, Any] | None = None) -> str:
        """One line for a validation error, naming the variable, YAML key or argument of each problem."""
        parts = []
        for err in exc.errors():
            loc = err.get("loc") or ()
            field = str(loc[0]) if loc else "?"
            origin = cls.origin(field, init)
            env = f"{cls.env_prefix()}{field}".upper()
            if origin.startswith("env "):
                where = f"{env}={_short(os.environ.get(env, _env_value(env)))}"
            elif origin.startswith("yaml "):
                _, path, key = origin.split(" ", 2)
                where = f"{CONFIG_ENV}={path} {key}={_short(err.get('input'))}"
            elif origin == "flag":
                where = f"{field}={_short(err.get('input'))}"
            else:
                where = f"{env} (default)"
            sub = ".".join(str(x) for x in loc[1:])
            parts.append(f"{where}{f' [{sub}]' if sub else ''}: {err.get('msg', 'invalid')}")
        return "; ".join(parts).replace("\n", " ")

    @classmethod
    def _explain_settings_error(cls, exc: SettingsError) -> str:
        m = re.search(r'field "([^"]+)"', str(exc))
        if m:
            env = f"{cls.env_prefix()}{m.group(1)}".upper()
            return f"{env}={_short(_env_value(env))}: cannot parse ({exc.__cause__ or exc})".replace(
                "\n", " "
            )
        return str(exc).replace("\n", " ")


def _env_value(name: str) -> str:
    for k, v in os.environ.items():
        if k.upper() == name:
            return v
    return ""


def data_dir() -> Path:
    """Default root for runtime state (``AUTOGLM_DATA_DIR``, else ``./.autoglm``)."""
    return Path(os.environ.get("AUTOGLM_DATA_DIR", ".autoglm"))
