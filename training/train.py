"""`rltrader train`: data -> env -> policy -> PPO -> checkpoints, with progress, metrics and resume.

Checkpoints hold everything needed to use the policy (weights, config, regime table,
observation layout, data fingerprint) and to resume training exactly (optimiser, RNG and env
state). Ctrl-C finishes the update in flight, saves a checkpoint and exits cleanly.
"""

from __future__ import annotations

import csv
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from rl_strategy.checkpoint import Checkpoint, Progress, build_payload, save_checkpoint
from rl_strategy.data import MarketData, load_market, load_panel_cache, select_period
from rl_strategy.env import MarketEnv, MarketTensors, prepare_training_market
from rl_strategy.errors import RLTraderError
from rl_strategy.features import feature_warmup, signal_tickers
from rl_strategy.policy import GRUPolicy
from rl_strategy.regimes import RegimeTable, build_regime_table
from rl_strategy.risk import policy_mask
from rl_strategy.settings import Settings, resolve_device
from training.ppo import PPOTrainer, TrainingDiverged
from training.validation import VALIDATION_COLUMNS, Validator

METRIC_COLUMNS = ("update", "timesteps", "episode_reward", "policy_loss", "value_loss", "entropy", "approx_kl",
                  "clip_fraction", "explained_variance", "learning_rate", "ent_coef", "loss", "steps_per_second",
                  "rollout_seconds", "update_seconds", *VALIDATION_COLUMNS)


def seed_everything(seed: int, device: str) -> None:
    """Seed every RNG; on CPU also insist on deterministic kernels (bit-identical reruns).
    On CUDA some kernels (scatter_add, GRU backward) are not deterministic: runs agree only
    to float tolerance there."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if device == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)


def training_end(settings: Settings) -> str:
    """The last day training decides on: the training window's end, or the day before a validation
    window that lies inside it (validation decisions never enter training batches)."""
    p = settings.periods
    if p.val_start is None:
        return p.train_end
    return min(p.train_end, str((pd.Timestamp(p.val_start) - pd.Timedelta(days=1)).date()))


def _load(settings: Settings, start: str, end: str, min_days: int) -> MarketData:
    """A period's panel plus the feature sets' warm-up rows of history and their signal tickers
    (from a tensor cache: only that period's rows)."""
    d, features = settings.data, settings.env.features
    warmup, signals = feature_warmup(features), list(signal_tickers(features, d.tickers))
    if d.cache_path:
        return select_period(load_panel_cache(d.cache_path, tickers=d.tickers, signals=signals), start, end,
                             history_days=warmup, min_days=min_days)
    return load_market(d.tickers, start, end, source=d.source, csv_dir=d.csv_dir, cache_dir=d.cache_dir, seed=d.seed,
                       history_days=warmup, min_days=min_days, signals=signals)


def load_training_data(settings: Settings) -> MarketData:
    """The training period's panel (a cache of 2015-2024 must not put the test years into training)."""
    return _load(settings, settings.periods.train_start, training_end(settings), settings.env.episode_length + 2)


def load_validation_data(settings: Settings) -> MarketData | None:
    p = settings.periods
    return None if p.val_start is None else _load(settings, p.val_start, p.val_end, settings.run.eval_horizon_days + 2)


@dataclass
class Session:
    """Everything a training run is made of, built from settings (and optionally a checkpoint)."""

    settings: Settings
    data: MarketData
    env: MarketEnv
    trainer: PPOTrainer
    device: str
    validator: Validator | None = None

    def payload(self) -> dict:
        """The checkpoint content for the current state of the run."""
        env, tr = self.env, self.trainer
        return build_payload(model_state=tr.policy.state_dict(), settings=self.settings, regimes=env.regimes,
                             layout=env.layout, data=self.data, execution=env.market.execution,
                             progress=Progress(tr.timesteps_done, tr.updates_done, tr.total_timesteps),
                             trainer_state=tr.state_dict())


def make_env(settings: Settings, market: MarketTensors, regimes: RegimeTable, n_envs: int, device: str) -> MarketEnv:
    """The training environment as the settings describe it (training and the benchmarks)."""
    e = settings.env
    return MarketEnv(market, regimes, n_envs=n_envs, episode_length=e.episode_length, fees=e.fees,
                     slippage=e.slippage, reward_scale=e.reward_scale, obs_dim=e.obs_dim, seed=settings.run.seed,
                     device=device, start_mix=e.start_mix, drawdown_window=e.drawdown_window, risk=settings.risk)


def build_session(settings: Settings, resume: Checkpoint | None = None) -> Session:
    device = resolve_device(settings.run.device)
    seed_everything(settings.run.seed, device)
    data = load_training_data(settings)
    e = settings.env
    market = prepare_training_market(data, e.execution, e.features)
    regimes = build_regime_table(tuple(data.tickers), settings.regimes.families)
    env = make_env(settings, market, regimes, settings.ppo.n_envs, device)
    policy = GRUPolicy(env.obs_dim, regimes.n_actions, settings.ppo.hidden,
                       policy_mask(regimes, settings.risk)).to(device)
    trainer = PPOTrainer(env, policy, settings.ppo, settings.run.timesteps, seed=settings.run.seed)
    val_data = load_validation_data(settings)
    validator = None if val_data is None else Validator(settings, val_data, regimes, device)
    session = Session(settings, data, env, trainer, device, validator)
    if resume is not None:
        resume.check_universe(data.tickers, env.obs_dim)
        trained_on = resume.training_data.fingerprint
        if trained_on != data.fingerprint:
            raise RLTraderError(f"--resume: {resume.path.name} was trained on other data "
                                f"(fingerprint {trained_on[:12]} vs {data.fingerprint[:12]})")
        trainer_state = resume.trainer_state
        policy.load_state_dict(resume.model_state)
        trainer.load_state_dict(trainer_state)
    return session


def resume_settings(ckpt: Checkpoint, timesteps: int | None, device: str | None, out: str | None) -> Settings:
    """A resumed run uses the checkpoint's config; only the budget, device and output may change."""
    s = ckpt.settings
    if timesteps is not None:
        s.run.timesteps = timesteps
    if device is not None:
        s.run.device = device
    if out is not None:
        s.run.out = out
    return s


class _GracefulInterrupt:
    """First Ctrl-C asks the loop to stop after the current update; a second one aborts."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def __enter__(self) -> _GracefulInterrupt:
        def handler(signum, frame):
            if self.requested:
                raise KeyboardInterrupt
            self.requested = True
        try:
            self._previous = signal.signal(signal.SIGINT, handler)
        except ValueError:  # not in the main thread (e.g. some test runners): no handler
            self._previous = None
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


@dataclass
class TrainResult:
    final_checkpoint: Path
    metrics_csv: Path
    history: list[dict]
    interrupted: bool
    seconds: float
    best_checkpoint: Path | None = None  # best validation score (`model_best_<stamp>.pt`), None without validation
    best_score: float | None = None
    stopped_early: bool = False          # `run.patience` evaluations without a better score


def run_training(session: Session, on_update: Callable[[dict], None] | None = None,
                 stop_after_updates: int | None = None) -> TrainResult:
    """Run updates until the budget is spent (or Ctrl-C, or `run.patience` validations without a
    better score); write metrics and checkpoints. With a validation window, the policy is scored
    every `run.eval_every` updates and at the end, and `model_best_<stamp>.pt` keeps the best."""
    s, tr = session.settings, session.trainer
    best = Best(out=Path(s.run.out), stamp="")
    out = Path(s.run.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d_%H%M%S")
    metrics_path = out / f"metrics_{stamp}.csv"
    best.stamp = stamp
    history: list[dict] = []
    start = time.perf_counter()
    interrupted = stopped_early = False
    with open(metrics_path, "w", newline="") as fh, _GracefulInterrupt() as stop:
        writer = csv.DictWriter(fh, fieldnames=METRIC_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        done_here = 0
        while tr.updates_done < tr.n_updates:
            try:
                stats = tr.train_one_update()
            except TrainingDiverged as exc:
                raise RLTraderError(f"training stopped: {exc}; the last good checkpoint in {out} is kept") from None
            last = tr.updates_done == tr.n_updates
            if session.validator is not None and (tr.updates_done % s.run.eval_every == 0 or last):
                stats.update(session.validator.evaluate(tr.policy))
                best.offer(stats["val_score"], session)
            history.append(stats)
            writer.writerow(stats)
            fh.flush()
            done_here += 1
            if on_update is not None:
                on_update(stats)
            if tr.updates_done % s.run.checkpoint_every == 0 and tr.updates_done < tr.n_updates:
                save_checkpoint(session.payload(), out / f"model_step_{tr.timesteps_done}.pt")
            if s.run.patience is not None and best.stale >= s.run.patience:
                stopped_early = True
                break
            if stop.requested or (stop_after_updates is not None and done_here >= stop_after_updates):
                interrupted = tr.updates_done < tr.n_updates
                break
    name = f"model_step_{tr.timesteps_done}.pt" if interrupted else f"model_final_{stamp}.pt"
    final = save_checkpoint(session.payload(), out / name)
    return TrainResult(final, metrics_path, history, interrupted, time.perf_counter() - start,
                       best.path, best.score, stopped_early)


@dataclass
class Best:
    """The best validation score so far and its checkpoint; `stale` counts evaluations since."""

    out: Path
    stamp: str
    score: float | None = None
    path: Path | None = None
    stale: int = 0

    def offer(self, score: float, session: Session) -> None:
        if score == score and (self.score is None or score > self.score):  # a NaN score is never best
            self.score, self.stale = score, 0
            self.path = save_checkpoint(session.payload(), self.out / f"model_best_{self.stamp}.pt")
        else:
            self.stale += 1
