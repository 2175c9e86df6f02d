"""Checkpoints: written atomically, loaded safely, checked against what they will be used with.

A checkpoint is a file from someone else. It is read with `torch.load(weights_only=True)`
(plain tensors and containers only, never arbitrary pickles) and carries a sha256 digest of
its whole payload, so a corrupted or edited file is refused instead of producing a silently
different policy. Its `spec` (universe, regime table, observation layout) must match the data
it is run on.
"""

from __future__ import annotations

import hashlib
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rl_strategy.atomic import atomic_write_bytes
from rl_strategy.errors import RLTraderError
from rl_strategy.paths import newest_match

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
    def spec(self) -> dict:
        return self.payload["spec"]

    @property
    def config(self) -> dict:
        return self.payload["config"]

    @property
    def assets(self) -> tuple[str, ...]:
        return tuple(self.spec["assets"])

    def policy(self, device: str | torch.device = "cpu"):
        """The trained network, in eval mode."""
        from rl_strategy.policy import GRUPolicy

        spec = self.spec
        net = GRUPolicy(spec["obs_dim"], spec["n_actions"], spec["hidden"])
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
        if obs_dim is not None and obs_dim != self.spec["obs_dim"]:
            raise RLTraderError(f"checkpoint {self.path.name} expects observations of size {self.spec['obs_dim']}, not {obs_dim}")


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
    return Checkpoint(path=path, payload=payload)


def resolve_model_path(pattern: str) -> Path:
    """A checkpoint path, or a glob whose newest match is used."""
    return newest_match(pattern, "checkpoint")
