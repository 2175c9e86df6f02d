"""Checkpoints: written atomically, loaded safely, checked against what they will be used with.

This module is the one checkpoint schema: `build_payload` writes it and `Checkpoint` reads it back
as typed objects (`spec`, `settings`, `training_data`, `progress`); nothing else indexes the
payload by string keys. A checkpoint is a file from someone else. It is read with `torch.load(weights_only=True)`
(plain tensors and containers only, never arbitrary pickles) and carries a sha256 digest of
its whole payload, so a corrupted or edited file is refused instead of producing a silently
different policy. Its `spec` (universe, regime table, observation layout) must match the data
it is run on.
"""

from __future__ import annotations

import hashlib
import platform
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from rl_strategy.atomic import atomic_write_bytes
from rl_strategy.errors import RLTraderError
from rl_strategy.paths import newest_match
from rl_strategy.settings import Settings, settings_from_dict

if TYPE_CHECKING:
    from rl_strategy.data import MarketData
    from rl_strategy.regimes import RegimeTable

FORMAT = "rl-trader-checkpoint/1"


def _feed(h: hashlib._Hash, obj: Any) -> None:
    """Canonical, order-stable hashing of the nested payload."""
    if isinstance(obj, dict):
        h.update(b"{")
        for key in sorted(obj):
            h.update(repr(key).encode())
            _feed(h, obj[key])
        h.update(b"}")
    elif isinstance(obj, (list, tuple)):
        h.update(b"[")
        for item in obj:
            _feed(h, item)
        h.update(b"]")
    elif isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous().reshape(-1)
        h.update(f"T{obj.dtype}{tuple(obj.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    else:
        h.update(repr(obj).encode())


def payload_digest(payload: dict) -> str:
    h = hashlib.sha256()
    _feed(h, {k: v for k, v in payload.items() if k != "digest"})
    return h.hexdigest()


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in ("rl-trader", "torch", "numpy", "pandas", "vectorbt"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


@dataclass(frozen=True)
class PolicySpec:
    """What the network and its inputs are: must match the data a checkpoint is run on."""

    obs_dim: int
    n_actions: int
    hidden: int
    assets: tuple[str, ...]
    regime_names: tuple[str, ...]
    layout: tuple[str, ...]      # name of every observation slot
    execution: str
    parameters: int


@dataclass(frozen=True)
class DataInfo:
    """The panel a policy was trained on (rows before `period_start` are feature warm-up)."""

    source: str
    fingerprint: str
    tickers: tuple[str, ...]
    first_day: str
    period_start: str
    last_day: str


@dataclass(frozen=True)
class Progress:
    timesteps: int
    updates: int
    total_timesteps: int


def build_payload(*, model_state: dict, settings: Settings, regimes: RegimeTable, layout: list[str],
                  data: MarketData, execution: str, progress: Progress, trainer_state: dict | None) -> dict:
    """The checkpoint content: weights, settings, regime table, observation layout, data
    fingerprint, versions, progress and (for resuming) the trainer state; tensors on the CPU."""
    idx = data.panel.index
    return {
        "model": {k: v.detach().cpu() for k, v in model_state.items()},
        "spec": {"obs_dim": len(layout), "n_actions": regimes.n_actions,
                 "hidden": int(model_state["gru.weight_hh_l0"].shape[1]), "assets": list(regimes.assets),
                 "regimes": regimes.to_dict(), "layout": list(layout), "execution": execution,
                 "parameters": sum(v.numel() for v in model_state.values())},
        "config": settings.to_dict(),
        "data": {"source": data.source, "fingerprint": data.fingerprint, "tickers": list(data.tickers),
                 "first_day": str(idx[0].date()), "last_day": str(idx[-1].date()),
                 "period_start": str(data.period_start.date())},
        "versions": package_versions(),
        "progress": {"timesteps": progress.timesteps, "updates": progress.updates,
                     "total_timesteps": progress.total_timesteps},
        "created": datetime.now().isoformat(timespec="seconds"),
        **({"trainer": _to_cpu(trainer_state)} if trainer_state is not None else {}),
    }


def _to_cpu(obj):
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_cpu(v) for v in obj]
    return obj


def save_checkpoint(payload: dict, path: str | Path) -> Path:
    """Add format and digest, then write atomically."""
    path = Path(path)
    payload = dict(payload, format=FORMAT)
    payload["digest"] = payload_digest(payload)
    atomic_write_bytes(path, lambda fh: torch.save(payload, fh))
    return path


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    payload: dict

    @property
    def spec(self) -> PolicySpec:
        s = self.payload["spec"]
        return PolicySpec(obs_dim=int(s["obs_dim"]), n_actions=int(s["n_actions"]), hidden=int(s["hidden"]),
                          assets=tuple(s["assets"]), regime_names=tuple(s["regimes"]["names"]),
                          layout=tuple(s["layout"]), execution=str(s["execution"]), parameters=int(s["parameters"]))

    @property
    def settings(self) -> Settings:
        """The resolved settings of the training run, as the typed objects training used."""
        return settings_from_dict(self.payload["config"])

    @property
    def training_data(self) -> DataInfo:
        d = self.payload["data"]
        return DataInfo(source=d["source"], fingerprint=d["fingerprint"], tickers=tuple(d["tickers"]),
                        first_day=d["first_day"], period_start=d["period_start"], last_day=d["last_day"])

    @property
    def progress(self) -> Progress:
        p = self.payload["progress"]
        return Progress(timesteps=int(p["timesteps"]), updates=int(p["updates"]), total_timesteps=int(p["total_timesteps"]))

    @property
    def trainer_state(self) -> dict:
        if "trainer" not in self.payload:
            raise RLTraderError(f"{self.path.name} holds no trainer state (it cannot be resumed)")
        return self.payload["trainer"]

    @property
    def model_state(self) -> dict:
        return self.payload["model"]

    @property
    def assets(self) -> tuple[str, ...]:
        return tuple(self.payload["spec"]["assets"])

    def policy(self, device: str | torch.device = "cpu"):
        """The trained network, in eval mode."""
        from rl_strategy.policy import GRUPolicy

        spec = self.spec
        net = GRUPolicy(spec.obs_dim, spec.n_actions, spec.hidden)
        try:
            net.load_state_dict(self.payload["model"])
        except RuntimeError as exc:
            raise RLTraderError(f"checkpoint {self.path}: weights do not fit the network ({str(exc).splitlines()[0]})") from None
        return net.to(device).eval()

    def check_universe(self, assets: tuple[str, ...] | list[str], obs_dim: int | None = None) -> None:
        """Refuse a checkpoint trained on another universe or observation size."""
        if tuple(assets) != self.assets:
            raise RLTraderError(f"checkpoint {self.path.name} was trained on {','.join(self.assets)}"
                                f" but the data holds {','.join(assets)}")
        if obs_dim is not None and obs_dim != self.spec.obs_dim:
            raise RLTraderError(f"checkpoint {self.path.name} expects observations of size {self.spec.obs_dim}, not {obs_dim}")


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Load with weights_only=True and verify format and digest; one-line errors otherwise."""
    path = Path(path)
    if not path.is_file():
        raise RLTraderError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # corrupt zip, truncated file, or a pickle that is not plain data
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RLTraderError(f"checkpoint {path} cannot be read safely: {first[:200]}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise RLTraderError(f"checkpoint {path} is not an rl-trader checkpoint ({FORMAT})")
    if payload.get("digest") != payload_digest(payload):
        raise RLTraderError(f"checkpoint {path} failed its integrity check (corrupted or modified)")
    for key in ("model", "spec", "config", "data", "progress"):
        if key not in payload:
            raise RLTraderError(f"checkpoint {path} lacks '{key}'")
    ckpt = Checkpoint(path=path, payload=payload)
    try:  # fail here, with one line, on a schema that does not parse
        ckpt.spec, ckpt.training_data, ckpt.progress  # noqa: B018
    except (KeyError, TypeError, ValueError) as exc:
        raise RLTraderError(f"checkpoint {path} has a malformed schema ({type(exc).__name__}: {exc})") from None
    ckpt.settings  # noqa: B018 - a config this version cannot read is a one-line RLTraderError
    return ckpt


def resolve_model_path(pattern: str) -> Path:
    """A checkpoint path, or a glob whose newest match is used."""
    return newest_match(pattern, "checkpoint")
