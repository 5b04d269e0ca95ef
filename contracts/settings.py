"""Settings base: pydantic-settings with an env prefix per side and an optional YAML file.

Precedence (highest first): explicit keyword arguments, environment variables
(``AUTOGLM_CLOUD_*`` / ``AUTOGLM_EDGE_*`` / ``AUTOGLM_EXPORT_*``), the YAML file named by
``AUTOGLM_CONFIG`` (or passed as ``yaml_file``), then the defaults. Every field carries a
``description``; ``autoglm config show SIDE`` prints them and docs are generated from them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

import yaml
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)


class YamlSource(PydanticBaseSettingsSource):
    """Reads one section (``cloud:``/``edge:``/…) or the whole mapping from a YAML file."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path | None, section: str) -> None:
        super().__init__(settings_cls)
        self._data: dict[str, Any] = {}
        if path is not None and path.is_file():
            loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            if not isinstance(loaded, dict):
                raise ValueError(f"{path}: top level must be a mapping")
            section_data = loaded.get(section, loaded)
            if isinstance(section_data, dict):
                self._data = section_data

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return {k: v for k, v in self._data.items() if k in self.settings_cls.model_fields}


class AutoGLMSettings(BaseSettings):
    """Base class. Subclasses set ``model_config`` with their env prefix and ``yaml_section``."""

    yaml_section: ClassVar[str] = ""
    model_config = SettingsConfigDict(extra="ignore", validate_default=True)
    registry: ClassVar[list[type[AutoGLMSettings]]] = []

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        AutoGLMSettings.registry.append(cls)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        cfg = os.environ.get("AUTOGLM_CONFIG")
        yaml_source = YamlSource(settings_cls, Path(cfg) if cfg else None, cls.yaml_section)
        return (init_settings, env_settings, yaml_source, file_secret_settings)

    @classmethod
    def env_names(cls) -> dict[str, str]:
        """Map of environment variable name -> field name (used by the manifest drift test)."""
        prefix = str(cls.model_config.get("env_prefix", ""))
        return {f"{prefix}{name}".upper(): name for name in cls.model_fields}

    @classmethod
    def describe(cls) -> list[tuple[str, str, str]]:
        """(env var, default, description) for each setting."""
        prefix = str(cls.model_config.get("env_prefix", ""))
        rows = []
        for name, field in cls.model_fields.items():
            default = field.get_default(call_default_factory=True)
            rows.append((f"{prefix}{name}".upper(), repr(default), field.description or ""))
        return rows


def data_dir() -> Path:
    """Default root for runtime state (``AUTOGLM_DATA_DIR``, else ``./.autoglm``)."""
    return Path(os.environ.get("AUTOGLM_DATA_DIR", ".autoglm"))
