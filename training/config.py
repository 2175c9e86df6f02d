"""The YAML configs of training runs (`training/configs/*.yaml`) read into typed `Settings`.

The schema itself (fields, defaults, validation, CLI precedence) is `rl_strategy.settings`, so a
checkpoint and a backtest read the same typed objects that training uses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rl_strategy.errors import RLTraderError
from rl_strategy.settings import Settings, build_settings, override

DEFAULT_CONFIG = Path(__file__).parent / "configs" / "rl_v2_multi_asset.yaml"


def load_settings(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Settings:
    """Read a YAML config (default: the v2 config), apply dotted-key overrides, validate."""
    import yaml

    path = Path(path) if path is not None else DEFAULT_CONFIG
    if not path.is_file():
        raise RLTraderError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise RLTraderError(f"config {path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    settings = build_settings(raw)
    return override(settings, overrides or {})
