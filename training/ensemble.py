"""Seed ensembles: one training run per seed, then one checkpoint that averages their policies.

`train_seeds` trains the seeds one after another in this process (each seed's run is the same
as `rltrader train --seed k --out <out>/seed_<k>`) and writes `<out>/model_ensemble_<stamp>.pt`
from each member's selected checkpoint: its best validation checkpoint when training kept one,
else its final one. The ensemble's rule and format are `rl_strategy.checkpoint.save_ensemble`'s;
`RLPolicy.load` and the backtest take the file like a single checkpoint.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from rl_strategy.checkpoint import load_checkpoint, save_ensemble
from rl_strategy.errors import RLTraderError
from rl_strategy.settings import Settings
from training.train import TrainResult, build_session, run_training


@dataclass
class EnsembleResult:
    ensemble: Path | None        # None when a member's run was interrupted (no ensemble of a half-trained member)
    members: list[Path]          # each finished seed's selected checkpoint, in seed order
    results: list[TrainResult]   # one per seed that ran
    seeds: list[int]
    interrupted: bool
    seconds: float


def selected_checkpoint(result: TrainResult) -> Path:
    """The member's checkpoint the ensemble uses: the best validation one if training kept it, else the final one."""
    best = getattr(result, "best_checkpoint", None)
    return best if best is not None else result.final_checkpoint


def write_ensemble(member_paths: list[str | Path], path: str | Path) -> Path:
    """An ensemble checkpoint of existing single checkpoints (refused, with one line, if they differ
    in universe, regime table, observations, execution, costs or training period)."""
    return save_ensemble([load_checkpoint(p) for p in member_paths], path)


def train_seeds(settings: Settings, seeds: list[int], on_update: Callable[[dict], None] | None = None) -> EnsembleResult:
    """Train `settings` once per seed into `<run.out>/seed_<k>/`, then write the ensemble into `<run.out>`.

    `settings` is not modified. `on_update` gets each update's stats with the member's "seed" added
    (timesteps count within that member's run). A Ctrl-C stops after the current member's update
    and leaves its resumable checkpoint; no ensemble is written then.
    """
    if not seeds or len(set(seeds)) != len(seeds):
        raise RLTraderError(f"--seeds needs distinct seeds, got {','.join(map(str, seeds)) or 'none'}")
    out = Path(settings.run.out)
    start = time.perf_counter()
    results: list[TrainResult] = []
    for seed in seeds:
        member = copy.deepcopy(settings)
        member.run.seed, member.run.out = seed, str(out / f"seed_{seed}")
        report = None if on_update is None else (lambda stats, seed=seed: on_update(dict(stats, seed=seed)))
        results.append(run_training(build_session(member), on_update=report))
        if results[-1].interrupted:
            break
    members = [selected_checkpoint(r) for r in results if not r.interrupted]
    interrupted = len(members) < len(seeds)
    ensemble = None
    if not interrupted:
        ensemble = write_ensemble(members, out / f"model_ensemble_{datetime.now().strftime('%Y%m%d_%H%M%S')}.pt")
    return EnsembleResult(ensemble, members, results, list(seeds), interrupted, time.perf_counter() - start)
