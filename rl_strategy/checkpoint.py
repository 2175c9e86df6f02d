"""Checkpoints: written atomically, loaded safely, checked against what they will be used with.

This module is the one checkpoint schema: `build_payload` writes it and `Checkpoint` reads it back
as typed objects (`spec`, `settings`, `training_data`, `progress`); nothing else indexes the
payload by string keys. A checkpoint is a file from someone else. It is read with `torch.load(weights_only=True)`
(plain tensors and containers only, never arbitrary pickles) and carries a sha256 digest of
its whole payload, so a corrupted or edited file is refused instead of producing a silently
different policy. Its `spec` (universe, regime table, observation layout) must match the data
it is run on.

An ensemble checkpoint (`save_ensemble`) is one file in the same format and under the same digest:
`{"ensemble": {"rule": "mean_probs", "members": [member paths, as provenance]}, "members": [payloads]}`,
each member payload as `build_payload` wrote it less the trainer state (an ensemble is used, not
resumed). Members share universe, regime table, observations, execution, costs and training
period, so the ensemble is used like one policy (`Checkpoint.policy` gives an `EnsemblePolicy`).
"""

from __future__ import annotations

import dataclasses
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
ENSEMBLE_RULE = "mean_probs"  # the members' action probabilities are averaged
REQUIRED = ("model", "spec", "config", "data", "progress")


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
    """One policy, or an ensemble of several: an ensemble's `spec`, `settings`, `training_data` and
    `assets` are its first member's (the members share what matters, see `check_members`); its
    `spec.parameters` and `progress` add up the members' (the network and experience behind it)."""

    path: Path
    payload: dict

    @property
    def is_ensemble(self) -> bool:
        return "ensemble" in self.payload

    @property
    def members(self) -> list[Checkpoint]:
        """An ensemble's members (path: where each was read from, relative to the ensemble's folder
        unless absolute; provenance only, the weights are in this file); [self] for one policy."""
        if not self.is_ensemble:
            return [self]
        return [Checkpoint(path=self.path.parent / name, payload=member)
                for name, member in zip(self.payload["ensemble"]["members"], self.payload["members"], strict=True)]

    @property
    def _head(self) -> dict:
        return self.payload["members"][0] if self.is_ensemble else self.payload

    @property
    def spec(self) -> PolicySpec:
        if self.is_ensemble:
            members = self.members
            return dataclasses.replace(members[0].spec, parameters=sum(m.spec.parameters for m in members))
        s = self.payload["spec"]
        return PolicySpec(obs_dim=int(s["obs_dim"]), n_actions=int(s["n_actions"]), hidden=int(s["hidden"]),
                          assets=tuple(s["assets"]), regime_names=tuple(s["regimes"]["names"]),
                          layout=tuple(s["layout"]), execution=str(s["execution"]), parameters=int(s["parameters"]))

    @property
    def settings(self) -> Settings:
        """The resolved settings of the training run, as the typed objects training used."""
        return settings_from_dict(self._head["config"])

    @property
    def training_data(self) -> DataInfo:
        d = self._head["data"]
        return DataInfo(source=d["source"], fingerprint=d["fingerprint"], tickers=tuple(d["tickers"]),
                        first_day=d["first_day"], period_start=d["period_start"], last_day=d["last_day"])

    @property
    def progress(self) -> Progress:
        if self.is_ensemble:
            parts = [m.progress for m in self.members]
            return Progress(timesteps=sum(p.timesteps for p in parts), updates=sum(p.updates for p in parts),
                            total_timesteps=sum(p.total_timesteps for p in parts))
        p = self.payload["progress"]
        return Progress(timesteps=int(p["timesteps"]), updates=int(p["updates"]), total_timesteps=int(p["total_timesteps"]))

    @property
    def trainer_state(self) -> dict:
        if "trainer" not in self.payload:
            raise RLTraderError(f"{self.path.name} holds no trainer state (it cannot be resumed)")
        return self.payload["trainer"]

    @property
    def model_state(self) -> dict:
        if self.is_ensemble:
            raise RLTraderError(f"{self.path.name} is an ensemble of {len(self.payload['members'])} policies"
                                " (each member has its own weights)")
        return self.payload["model"]

    @property
    def assets(self) -> tuple[str, ...]:
        return tuple(self._head["spec"]["assets"])

    def policy(self, device: str | torch.device = "cpu"):
        """The trained network, in eval mode (an `EnsemblePolicy` of the members' for an ensemble)."""
        from rl_strategy.policy import EnsemblePolicy, GRUPolicy

        if self.is_ensemble:
            return EnsemblePolicy([m.policy(device) for m in self.members]).eval()
        spec = self.spec
        net = GRUPolicy(spec.obs_dim, spec.n_actions, spec.hidden, self.payload["model"].get("action_mask"))
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
    if "ensemble" in payload:
        _check_ensemble_layout(path, payload)
    for part in payload["members"] if "ensemble" in payload else [payload]:
        for key in REQUIRED:
            if key not in part:
                raise RLTraderError(f"checkpoint {path} lacks '{key}'")
    ckpt = Checkpoint(path=path, payload=payload)
    try:  # fail here, with one line, on a schema that does not parse
        for part in ckpt.members:
            part.spec, part.training_data, part.progress  # noqa: B018
    except (KeyError, TypeError, ValueError) as exc:
        raise RLTraderError(f"checkpoint {path} has a malformed schema ({type(exc).__name__}: {exc})") from None
    for part in ckpt.members:
        part.settings  # noqa: B018 - a config this version cannot read is a one-line RLTraderError
    if ckpt.is_ensemble:
        check_members(ckpt.members)
    return ckpt


def _check_ensemble_layout(path: Path, payload: dict) -> None:
    """The ensemble header: the one known rule, one provenance path per member payload."""
    ens, members = payload["ensemble"], payload.get("members")
    if not isinstance(ens, dict) or ens.get("rule") != ENSEMBLE_RULE:
        raise RLTraderError(f"checkpoint {path}: unknown ensemble rule (this version averages probabilities,"
                            f" '{ENSEMBLE_RULE}')")
    if (not isinstance(members, list) or not members or not all(isinstance(m, dict) for m in members)
            or not isinstance(ens.get("members"), list) or len(ens["members"]) != len(members)
            or not all(isinstance(name, str) for name in ens["members"])):
        raise RLTraderError(f"checkpoint {path} has a malformed ensemble (one path and one payload per member)")


def _member_traits(ck: Checkpoint) -> dict[str, Any]:
    """What ensemble members must share to act as one policy on one market: the same actions
    and observations, the same trading costs and timing, and the same training period (the
    backtest's overlap check reads one)."""
    spec, env, data = ck.spec, ck.settings.env, ck.training_data
    return {"assets": ",".join(spec.assets), "regime table": ck.payload["spec"]["regimes"],
            "obs_dim": spec.obs_dim, "observation layout": spec.layout, "hidden size": spec.hidden,
            "execution": spec.execution, "fees": env.fees, "slippage": env.slippage,
            "drawdown window": env.drawdown_window,
            "training period": f"{data.period_start}..{data.last_day}"}


def check_members(members: list[Checkpoint]) -> None:
    """Refuse, with one line naming the first difference, members that cannot be averaged."""
    first = _member_traits(members[0])
    for other in members[1:]:
        for name, value in _member_traits(other).items():
            if value != first[name]:
                a, b = repr(first[name]), repr(value)
                shown = f": {a} vs {b}" if len(a) + len(b) < 120 else ""
                raise RLTraderError(f"ensemble members differ in {name} ({members[0].path} vs {other.path}){shown}")


def save_ensemble(members: list[Checkpoint], path: str | Path) -> Path:
    """Write an ensemble of single checkpoints (atomically, with the checkpoint digest). Members are
    recorded relative to the ensemble's folder when inside it, else as absolute paths."""
    path = Path(path)
    if not members:
        raise RLTraderError("an ensemble needs at least one member checkpoint")
    nested = [str(m.path) for m in members if m.is_ensemble]
    if nested:
        raise RLTraderError(f"{nested[0]} is already an ensemble: build ensembles from single checkpoints")
    check_members(members)
    home = path.parent.resolve()
    names = []
    for m in members:
        where = m.path.resolve()
        names.append(str(where.relative_to(home)) if where.is_relative_to(home) else str(where))
    payload = {"ensemble": {"rule": ENSEMBLE_RULE, "members": names},
               "members": [{k: v for k, v in m.payload.items() if k not in ("trainer", "format", "digest")}
                           for m in members],
               "versions": package_versions(), "created": datetime.now().isoformat(timespec="seconds")}
    return save_checkpoint(payload, path)


def resolve_model_path(pattern: str) -> Path:
    """A checkpoint path, or a glob whose newest match is used."""
    return newest_match(pattern, "checkpoint")
