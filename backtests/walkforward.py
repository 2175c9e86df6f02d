"""Walk-forward evaluation: train, select and test on rolling windows, then read the test windows as one account.

Fold k's window starts `step_years * k` after --start: it trains on `train_years` (training decisions
stop before its validation window, the last `val_years`, where the checkpoint is selected exactly as
`rltrader train --val-start/--val-end` does) and tests on the following `test_years`, clipped at --end.
Test windows follow each other (--step-years defaults to --test-years; a larger step leaves days
between them, a smaller one is refused), so no day is tested twice and none is decided by a policy that
trained or was selected on it (feature warm-up rows may lie before a window: past prices only).

One task trains one (fold, seed) pair and backtests its selected checkpoint on the fold's test window
with every readout of `rltrader backtest` (`run_tasks` runs it locally or on Ray, see backends.py). Its
`<out>/fold_<k>/seed_<s>/result.json` is written last and atomically: a pair with that file is done,
so a rerun with the same --out trains only what is missing. In the main process, each fold's finished
seeds become an ensemble checkpoint (backtested the same way), and the test windows are stitched into
one out-of-sample account per policy ("track": the ensemble, each seed):

* Holdings carry over: fold k+1's policy starts from the asset weights its account held at the close
  before its first decision. They are read from vectorbt: the concatenated orders so far are simulated
  and each path's asset value over its portfolio value is taken on that row (the environment's drifted
  weights; the parity check below would fail otherwise). GRU memory and the drawdown window restart with
  the new policy. With `restart_each_fold` every fold starts from cash instead (a paper restart at no
  cost, as each fold's own backtest starts).
* Every path is stitched: the greedy one and `samples` sampled ones (sampled path k of fold 1 continues
  as sampled path k of fold 2, each from its own holdings).
* vectorbt simulates the concatenated orders (one simulation over the whole span; one per fold with
  `restart_each_fold`), and the environments' fold equities chained must match it (`PARITY_TOLERANCE`).
* Baselines are stateless rules: each runs over the whole span in one go (buy and hold buys once, on
  the first test day).

A fold a track has no policy for (all its tasks failed) is a held fold: the account keeps its positions
without orders there and the JSON lists it. Days between test windows (--step-years above --test-years)
are held the same way.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from backtests.backends import BackendOptions, run_tasks, torch_threads
from backtests.baselines import BaselineContext, baseline_builders
from backtests.criteria import RL_NAME
from backtests.evaluate import (
    PARITY_TOLERANCE,
    BacktestResult,
    EvalOptions,
    load_backtest_data,
    percentile_of,
    run_backtest,
)
from backtests.metrics import COUNT_METRICS, rank_by_sharpe, returns_metrics, trading_metrics
from backtests.significance import significance
from rl_strategy.atomic import atomic_write_text
from rl_strategy.data import MarketData, select_period
from rl_strategy.errors import RLTraderError
from rl_strategy.portfolio import periods_per_year, simulate_portfolio, trade_prices, value_before_orders
from rl_strategy.settings import Settings, settings_from_dict
from rl_strategy.strategy import RLPolicy
from training.ensemble import selected_checkpoint, write_ensemble
from training.train import build_session, run_training, training_end

#: A clipped last test window shorter than this many calendar days is not a fold.
MIN_TEST_DAYS = 28
RESULT_FILE = "result.json"
ENSEMBLE_FILE = "model_ensemble.pt"
JSON_FILE = "walkforward.json"
RETURNS_FILE = "walkforward.returns.csv"
GREEDY = "greedy"
BENCHMARK = "EQ_BUY_HOLD"
#: The stitched readout the significance tests read: the seed ensemble's greedy path.
MAIN_SERIES = RL_NAME
STITCH_METRICS = ("sharpe", "total_return", "max_drawdown", "turnover")

OnProgress = Callable[[int, int], None]


# -- folds ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Fold:
    """One fold's windows, ISO dates, inclusive. The validation window (None without one) is the
    end of the training window; training decisions stop the day before it."""

    index: int
    train_start: str
    train_end: str
    val_start: str | None
    val_end: str | None
    test_start: str
    test_end: str

    def to_json(self) -> dict:
        return {"fold": self.index} | {k: v for k, v in asdict(self).items() if k != "index"}


def _day(value: str, flag: str) -> pd.Timestamp:
    try:
        return pd.Timestamp(value)
    except (ValueError, TypeError):
        raise RLTraderError(f"{flag} must be a YYYY-MM-DD date, got {value!r}") from None


def _iso(day: pd.Timestamp) -> str:
    return str(day.date())


def fold_windows(start: str, end: str, train_years: int = 5, val_years: int = 1, test_years: int = 1,
                 step_years: int | None = None) -> list[Fold]:
    """The folds of a walk-forward over [start, end]; a one-line error for a range that holds none."""
    step = test_years if step_years is None else step_years
    if train_years < 1 or test_years < 1 or not 0 <= val_years < train_years:
        raise RLTraderError(f"--train-years and --test-years must be >= 1 and --val-years in [0, --train-years), "
                            f"got {train_years}, {test_years} and {val_years}")
    if step < test_years:
        raise RLTraderError(f"--step-years {step} below --test-years {test_years} would test some days twice")
    first, last = _day(start, "--start"), _day(end, "--end")
    if last <= first:
        raise RLTraderError(f"--end {_iso(last)} must be after --start {_iso(first)}")
    day, folds = pd.Timedelta(days=1), []
    while True:
        s = first + pd.DateOffset(years=len(folds) * step)
        test_start = s + pd.DateOffset(years=train_years)
        test_end = min(test_start + pd.DateOffset(years=test_years) - day, last)
        if (test_end - test_start).days + 1 < MIN_TEST_DAYS:
            break
        val_start = s + pd.DateOffset(years=train_years - val_years)
        folds.append(Fold(len(folds), _iso(s), _iso(test_start - day), _iso(val_start) if val_years else None,
                          _iso(test_start - day) if val_years else None, _iso(test_start), _iso(test_end)))
    if not folds:
        raise RLTraderError(f"--start {_iso(first)} .. --end {_iso(last)} is too short for one fold: {train_years} "
                            f"training years and at least {MIN_TEST_DAYS} days of test window")
    return folds


@dataclass(frozen=True)
class WalkforwardOptions:
    """The walk-forward's plan (the `rltrader walkforward` flags that are not about execution)."""

    start: str
    end: str
    out: str
    train_years: int = 5
    val_years: int = 1
    test_years: int = 1
    step_years: int | None = None
    seeds: int = 3                   # seeds 1..seeds per fold
    samples: int = 32                # sampled paths per fold backtest and per stitched track
    null_draws: int = 200            # random policies of each fold backtest's fair null
    restart_each_fold: bool = False  # every fold starts from cash instead of the holdings the last one ended with

    def folds(self) -> list[Fold]:
        if self.seeds < 1:
            raise RLTraderError(f"--seeds must be >= 1, got {self.seeds}")
        EvalOptions(samples=self.samples, null_draws=self.null_draws).check()
        return fold_windows(self.start, self.end, self.train_years, self.val_years, self.test_years, self.step_years)

    @property
    def seed_list(self) -> list[int]:
        return list(range(1, self.seeds + 1))


def fold_settings(base: Settings, fold: Fold, seed: int, out: Path) -> Settings:
    """`base` with the fold's windows, the seed and the pair's output folder (validated)."""
    raw = base.to_dict()
    raw["periods"] = {"train_start": fold.train_start, "train_end": fold.train_end, "val_start": fold.val_start,
                      "val_end": fold.val_end, "test_start": fold.test_start, "test_end": fold.test_end}
    raw["run"] |= {"seed": seed, "out": str(out)}
    return settings_from_dict(raw)


def pair_dir(out: Path, fold: int, seed: int) -> Path:
    return out / f"fold_{fold}" / f"seed_{seed}"


# -- the task ------------------------------------------------------------------------------------
def train_pair(settings: dict, fold: dict, seed: int, out: str, samples: int, null_draws: int) -> dict:
    """One (fold, seed) task, plain data in and out: train on the fold's window, keep the checkpoint
    selected on its validation window, backtest it on the test window, write `result.json` last.
    `settings`: `Settings.to_dict()` of the run; `fold`: `asdict(Fold)`; `out`: the walk-forward folder."""
    start = time.perf_counter()
    digest = job_digest(settings, fold, seed, samples, null_draws)
    f, root = Fold(**fold), Path(out)
    where = pair_dir(root, f.index, seed)
    s = fold_settings(settings_from_dict(settings), f, seed, where)
    trained = run_training(build_session(s))
    if trained.interrupted:
        raise RLTraderError(f"fold {f.index} seed {seed}: training was interrupted")
    checkpoint = selected_checkpoint(trained)
    policy = RLPolicy.load(checkpoint)
    data = load_backtest_data(s, policy.assets, f.test_start, f.test_end)
    backtest = run_backtest(policy, data, options=EvalOptions(samples=samples, null_draws=null_draws, seed=f.index))
    rel = lambda p: Path(p).resolve().relative_to(root.resolve()).as_posix()  # noqa: E731
    result = {"fold": f.index, "seed": seed, "job_digest": digest, "checkpoint": rel(checkpoint),
              "selected": "best" if trained.best_checkpoint is not None else "final",
              "training": {"timesteps": policy.checkpoint.progress.timesteps, "seconds": trained.seconds,
                           "best_score": trained.best_score, "stopped_early": trained.stopped_early,
                           "decisions_end": training_end(s)},
              "backtest": backtest_summary(backtest), "seconds": time.perf_counter() - start}
    result["files"] = [result["checkpoint"], rel(where / RESULT_FILE)]
    atomic_write_text(where / RESULT_FILE, json.dumps(json_safe(result), indent=1))
    return result


def job_digest(settings: dict, fold: dict, seed: int, samples: int, null_draws: int) -> str:
    """What a pair's result depends on: a result.json written for other settings is never reused."""
    body = json.dumps([settings, fold, seed, samples, null_draws], sort_keys=True, default=str)
    return hashlib.sha256(body.encode()).hexdigest()


def read_result(out: Path, job: dict) -> dict | None:
    """A finished pair's result, or None (no marker, or its checkpoint is gone); a one-line error when
    it was written for other settings (config, windows or readouts)."""
    path = pair_dir(out, job["fold"]["index"], job["seed"]) / RESULT_FILE
    if not path.is_file():
        return None
    result = json.loads(path.read_text())
    if result.get("job_digest") != job_digest(**{k: v for k, v in job.items() if k != "out"}):
        raise RLTraderError(f"{path} was written for other settings (config, windows, --samples or --null-draws): "
                            "use another --out, or delete that folder to retrain it")
    return result if (out / result["checkpoint"]).is_file() else None


def json_safe(obj):
    """Plain JSON values: numpy scalars as Python numbers, NaN and infinities as null."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        return float(obj) if math.isfinite(obj) else None
    return obj


def _row(row: pd.Series) -> dict:
    """A table row as JSON values (counts as ints; a row of mixed types arrives as floats)."""
    return json_safe({k: None if pd.isna(v) else int(v) if k in COUNT_METRICS else v for k, v in row.items()})


def backtest_summary(result: BacktestResult) -> dict:
    """A fold backtest's figures: the RL row, every baseline's row, the readouts, the criteria."""
    table, ppy = result.table, result.periods_per_year
    rl = table.loc[RL_NAME]
    baselines = [n for n in baseline_builders(result.checkpoint.assets) if n in table.index]
    best = table.loc[baselines, "sharpe"].idxmax() if baselines else None
    days = result.returns.index
    return json_safe({
        "first_day": _iso(days[0]), "last_day": _iso(days[-1]), "days": len(days), "periods_per_year": ppy,
        "rl": _row(rl), "sharpe_per_period": float(rl["sharpe"]) / math.sqrt(ppy),
        "sampled": result.rl_sampled, "null": result.random_null,
        "rolling_origins": {k: v for k, v in result.rolling_origins.items() if k != "origins"},
        "behaviour": result.rl_behaviour, "criteria": [c.to_dict() for c in result.criteria], "passed": result.passed,
        "best_baseline": None if best is None else {"name": best, "sharpe": table.loc[best, "sharpe"]},
        "table": {name: _row(row) for name, row in table.iterrows()},
        "parity_max_rel_diff": result.parity_max_rel_diff, "warnings": list(result.warnings)})


# -- the run -------------------------------------------------------------------------------------
@dataclass
class Stitched:
    """The test windows read as one account per series (see the module docstring)."""

    data: MarketData                            # the span: first test day (after warm-up rows) .. last test day
    policies: dict[str, dict[int, Path]]        # per track and fold: the checkpoint that decides there
    rows: list[tuple[int, int]]                 # per fold: (first decision row, last row) of its test window
    restart_each_fold: bool
    weights: dict[str, pd.DataFrame]            # per track: the orders over the span, columns (path, asset), NaN = none
    start_weights: dict[str, dict[int, pd.DataFrame]]  # per track and fold: paths x assets held at its start
    equity: pd.DataFrame                        # the environments' values chained, 1 at the close before the first decision
    returns: pd.DataFrame                       # vectorbt's daily returns of every series, from the first decision
    table: pd.DataFrame                         # ranked metrics of the greedy tracks and the baselines
    sampled: dict                               # per track: the spread of its stitched sampled paths
    parity_max_rel_diff: float
    held_folds: dict[str, list[int]] = field(default_factory=dict)


@dataclass
class WalkforwardResult:
    report: dict                # what walkforward.json holds
    folds: list[Fold]
    stitched: Stitched | None   # None when no pair finished
    path: Path                  # walkforward.json


def run_walkforward(settings: Settings, plan: WalkforwardOptions, backend: BackendOptions | None = None, *,
                    task: Callable[..., dict] = train_pair, on_progress: OnProgress | None = None) -> WalkforwardResult:
    """Train every missing (fold, seed) pair with `backend`, then ensembles, stitching and significance
    in this process; writes `<out>/walkforward.json` and the stitched returns beside it."""
    started = time.perf_counter()
    backend = (backend or BackendOptions()).check()
    folds, out = plan.folds(), Path(plan.out)
    # bad windows are one line now, not a failed task per pair later
    decisions_end = {f.index: training_end(fold_settings(settings, f, 1, out)) for f in folds}
    span = load_backtest_data(settings, tuple(settings.data.tickers), folds[0].test_start, folds[-1].test_end)
    keys = [(fold.index, seed) for fold in folds for seed in plan.seed_list]
    all_jobs = {(k, s): {"settings": settings.to_dict(), "fold": asdict(folds[k]), "seed": s, "out": str(out),
                         "samples": plan.samples, "null_draws": plan.null_draws} for k, s in keys}
    pairs = {key: r for key, job in all_jobs.items() if (r := read_result(out, job)) is not None}
    resumed = sorted(pairs)
    jobs = [job for key, job in all_jobs.items() if key not in pairs]
    if on_progress is not None:
        on_progress(len(pairs), len(keys))

    def finished(job: dict, result: dict) -> None:
        pairs[(result["fold"], result["seed"])] = result
        if on_progress is not None:
            on_progress(len(pairs), len(keys))

    _, failures = run_tasks(task, jobs, backend, finished)
    failed = [{"fold": job["fold"]["index"], "seed": job["seed"], "error": error} for job, error in failures]
    with torch_threads(backend.cpus_per_task):  # small batches: more threads only contend
        entries, policies = _folds_and_ensembles(folds, plan, pairs, failed, out, span)
        stitched = stitch(span, folds, policies, plan.samples, plan.restart_each_fold, settings) if policies else None
    for entry in entries:
        entry["train_decisions_end"] = decisions_end[entry["fold"]]
    report = json_safe({
        "settings": {"walkforward": asdict(plan), "backend": asdict(backend), "config": settings.to_dict()},
        "folds": entries,
        "stitched": None if stitched is None else stitched_summary(stitched),
        "significance": None if stitched is None else _significance(stitched, pairs, entries, plan),
        "failed": sorted(failed, key=lambda f: (f["fold"], f["seed"])),
        "ran": [list(k) for k in sorted(set(pairs) - set(resumed))], "resumed": [list(k) for k in resumed],
        "wall_seconds": time.perf_counter() - started,
    })
    return WalkforwardResult(report, folds, stitched, write_outputs(report, stitched, out))


def _folds_and_ensembles(folds: list[Fold], plan: WalkforwardOptions, pairs: dict, failed: list[dict], out: Path,
                         span: MarketData) -> tuple[list[dict], dict[str, dict[int, Path]]]:
    """Per fold: its seeds' figures, an ensemble of the seeds that finished (backtested like them) and
    the headline (the ensemble's); and each track's checkpoint per fold, for the stitching."""
    entries, policies = [], {}
    for fold in folds:
        members = {s: pairs[(fold.index, s)] for s in plan.seed_list if (fold.index, s) in pairs}
        entry = fold.to_json() | {
            "seeds": {str(s): r["backtest"] | {k: r[k] for k in ("checkpoint", "selected", "training")}
                      for s, r in members.items()},
            "failed_seeds": sorted(f["seed"] for f in failed if f["fold"] == fold.index), "ensemble": None}
        for s, r in members.items():
            policies.setdefault(f"{RL_NAME}_SEED_{s}", {})[fold.index] = out / r["checkpoint"]
        if members:
            path = write_ensemble([out / r["checkpoint"] for r in members.values()],
                                  out / f"fold_{fold.index}" / ENSEMBLE_FILE)
            policy = RLPolicy.load(path)
            data = select_period(span, fold.test_start, fold.test_end, history_days=policy.warmup)
            result = run_backtest(policy, data, options=EvalOptions(samples=plan.samples, null_draws=plan.null_draws,
                                                                    seed=fold.index))
            entry["ensemble"] = {"members": sorted(members), "checkpoint": path.relative_to(out).as_posix()
                                 } | backtest_summary(result)
            policies.setdefault(RL_NAME, {})[fold.index] = path
        head = entry["ensemble"] or {}
        entry |= {"best_baseline": head.get("best_baseline"), "criteria": head.get("criteria"),
                  "passed": head.get("passed"), "null_percentile": head.get("null", {}).get("rl_sharpe_percentile")}
        entries.append(entry)
    tracks = [RL_NAME, *[f"{RL_NAME}_SEED_{s}" for s in plan.seed_list]]
    return entries, {t: policies[t] for t in tracks if t in policies}


# -- stitching -----------------------------------------------------------------------------------
def path_names(samples: int) -> list[str]:
    return [GREEDY, *[f"S{k}" for k in range(samples)]]


def series_name(track: str, path: str) -> str:
    """A stitched series' column: the track itself for its greedy path, `<track>:S<k>` for a sampled one."""
    return track if path == GREEDY else f"{track}:{path}"


def fold_rows(index: pd.DatetimeIndex, folds: list[Fold], warmup: int) -> list[tuple[int, int]]:
    """(first decision row, last row) of each fold's test window in the span's index."""
    rows = [(int(index.searchsorted(pd.Timestamp(f.test_start))),
             int(index.searchsorted(pd.Timestamp(f.test_end), side="right")) - 1) for f in folds]
    rows[0] = (max(rows[0][0], warmup), rows[0][1])
    return rows


def stitch(span: MarketData, folds: list[Fold], policies: dict[str, dict[int, Path]], samples: int,
           restart_each_fold: bool, settings: Settings) -> Stitched:
    """Replay every track's paths fold after fold, simulate the concatenated orders with vectorbt,
    check them against the environments' equities and measure every series (module docstring)."""
    e = settings.env
    sim = dict(fees=e.fees, slippage=e.slippage, execution=e.execution)
    idx = span.close.index
    any_policy = RLPolicy.load(next(iter(next(iter(policies.values())).values())))  # the warm-up and regimes of all
    rows = fold_rows(idx, folds, any_policy.warmup)
    names = path_names(samples)
    weights, env_returns, starts = _replay_folds(span, rows, policies, names, restart_each_fold, sim)
    first, last, ppy = rows[0][0], len(idx) - 1, periods_per_year(idx)
    # one account from the first test day, or (restart) one per fold, up to the next fold's start
    segments = ([(a, b) for (a, _), b in zip(rows, [a - 1 for a, _ in rows[1:]] + [last], strict=True)]
                if restart_each_fold else [(first, last)])
    returns, marks, trading = _simulate_segments(pd.concat(weights, axis=1, names=["track", "path", "asset"]), span,
                                                 segments, sim, ppy)
    env = _flat(pd.concat(env_returns, axis=1).iloc[first:]).reindex(columns=marks.columns)
    equity = (1.0 + env.fillna(marks)).cumprod()  # held rows (no environment ran): vectorbt's marks
    parity = float(np.max(np.abs(equity.to_numpy() / (1.0 + marks).cumprod().to_numpy() - 1.0)))
    if not parity <= PARITY_TOLERANCE:
        raise RLTraderError(f"stitching parity failed: environment vs vectorbt equity differ by {parity:.2e} "
                            f"(> {PARITY_TOLERANCE:.0e}); the stitched numbers cannot be trusted")

    base_returns, base_trading = _baselines(span, first, sim, ppy, any_policy)
    returns = returns.join(base_returns)
    bench = (span.close / span.close.shift(1)).mean(axis=1).iloc[first:] - 1.0
    bench.iloc[0] = 0.0  # the benchmark starts at the first decision's close, like every series
    metrics = returns_metrics(returns, bench.rename("EQ_BENCHMARK"), ppy).join(pd.concat([trading, base_trading]))
    return Stitched(data=span, policies=policies, rows=rows, restart_each_fold=restart_each_fold, weights=weights,
                    start_weights=starts, equity=equity, returns=returns,
                    table=rank_by_sharpe(metrics.loc[[*policies, *base_returns.columns]]),
                    sampled=_sampled_spread(metrics, list(policies), names), parity_max_rel_diff=parity,
                    held_folds={t: [f.index for f in folds if f.index not in by_fold] for t, by_fold in policies.items()})


def _flat(frame: pd.DataFrame) -> pd.DataFrame:
    """(track, path) columns as series names."""
    return frame.set_axis([series_name(t, p) for t, p in frame.columns], axis=1)


def _replay_folds(span: MarketData, rows: list[tuple[int, int]], policies: dict[str, dict[int, Path]],
                  names: list[str], restart: bool, sim: dict):
    """Each track's paths fold after fold, each path from the holdings its account has at the fold's
    start. Returns the orders per track (span x (path, asset)), the environments' daily returns per
    track (span x path, NaN where no environment ran) and the start weights per track and fold."""
    close, open_, signals = span.close, span.open, span.signal_close
    idx, assets = close.index, list(close.columns)
    cols = pd.MultiIndex.from_product([names, assets], names=["path", "asset"])
    weights = {t: pd.DataFrame(np.nan, index=idx, columns=cols) for t in policies}
    env = {t: pd.DataFrame(np.nan, index=idx, columns=names) for t in policies}
    starts: dict[str, dict[int, pd.DataFrame]] = {t: {} for t in policies}
    for k, (a, b) in enumerate(rows):
        carried = _carried_weights(weights, span, a, sim) if k and not restart else {}
        seeds = np.random.SeedSequence(k).generate_state(len(names))  # as the fold's backtest seeds its paths
        for track, by_fold in policies.items():
            if k not in by_fold:
                continue
            policy = RLPolicy.load(by_fold[k])
            init = carried.get(track, np.zeros((len(names), len(assets))))
            starts[track][k] = pd.DataFrame(init, index=names, columns=assets)
            lo = a - policy.warmup
            p = policy.paths(close.iloc[lo:b + 1], open_.iloc[lo:b + 1], names=names, starts=[idx[a]] * len(names),
                             sample=[i > 0 for i in range(len(names))], seeds=[int(x) for x in seeds], initial=init,
                             signals=signals.iloc[lo:b + 1], **sim)  # one batched replay, each path its own start
            weights[track].iloc[a:b + 1] = p.weights[names].to_numpy()[a - lo:]
            value = p.equity[names].to_numpy()[a - lo:]  # rows a..b, 1 at the close before a
            env[track].iloc[a:b + 1] = value / np.vstack([np.ones((1, len(names))), value[:-1]]) - 1.0
    return weights, env, starts


def _carried_weights(weights: dict[str, pd.DataFrame], span: MarketData, row: int, sim: dict) -> dict[str, np.ndarray]:
    """Per track, (paths, assets) weights held at the close of `row - 1`: the concatenated orders so far
    simulated by vectorbt, asset value over portfolio value (float noise below zero clipped)."""
    stacked = pd.concat(weights, axis=1, names=["track", "path", "asset"]).iloc[:row]
    pf = simulate_portfolio(stacked, span.open.iloc[:row], span.close.iloc[:row], **sim)
    held = pf.asset_value(group_by=False).iloc[-1]
    value = pf.value().iloc[-1].reindex(held.index.droplevel(-1)).to_numpy()
    w = np.clip(held.to_numpy() / value, 0.0, None)
    blocks = w.reshape(len(weights), -1, span.close.shape[1])  # (tracks, paths, assets), in the columns' order
    return dict(zip(weights, blocks, strict=True))


def _simulate_segments(stacked: pd.DataFrame, span: MarketData, segments: list[tuple[int, int]], sim: dict,
                       ppy: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Each segment (first row, last row) as accounts of their own, from cash, with that segment's orders
    only, and their rows joined: vectorbt's daily returns, its marks as returns (the value before each
    close's orders, what the environment reports) and the trading metrics over all the rows."""
    returns, marks, turnover, rebalances = [], [], 0.0, 0
    for a, end in segments:
        w = stacked.iloc[:end + 1].copy()
        w.iloc[:a] = np.nan
        close, open_ = span.close.iloc[:end + 1], span.open.iloc[:end + 1]
        pf = simulate_portfolio(w, open_, close, **sim)
        returns.append(pf.returns().iloc[a:])
        marks.append(value_before_orders(pf, close, sim["execution"]).iloc[a - 1:].pct_change(fill_method=None).iloc[1:])
        trading = trading_metrics(pf, a, trade_prices(open_, close, w.columns, sim["execution"]), ppy)
        turnover, rebalances = turnover + trading["turnover"] * (end - a + 1), rebalances + trading["rebalances"]
    turnover = turnover / sum(end - a + 1 for a, end in segments)  # the mean over every row
    trading = pd.DataFrame({"turnover": turnover, "turnover_annual": turnover * ppy, "rebalances": rebalances})
    return _flat(pd.concat(returns)), _flat(pd.concat(marks)), _flat(trading.T).T


def _baselines(span: MarketData, first: int, sim: dict, ppy: int, policy: RLPolicy) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every baseline rule over the whole span in one simulation (stateless rules; buy and hold buys once)."""
    ctx = BaselineContext(close=span.close, regimes=policy.regimes, first=first,
                          rl_actions=pd.Series("", index=span.close.index))
    weights = {name: build(ctx) for name, build in baseline_builders(policy.assets).items()}
    stacked = pd.concat(weights, axis=1, names=["policy", "asset"])
    pf = simulate_portfolio(stacked, span.open, span.close, **sim)
    trading = trading_metrics(pf, first, trade_prices(span.open, span.close, stacked.columns, sim["execution"]), ppy)
    return pf.returns().iloc[first:], trading


def _sampled_spread(metrics: pd.DataFrame, tracks: list[str], names: list[str]) -> dict:
    """Per track, the median and 5-95% band of its stitched sampled paths' metrics, and where the
    greedy path's Sharpe falls among them."""
    out = {}
    for track in tracks:
        m = metrics.loc[[series_name(track, p) for p in names[1:]]]
        out[track] = {"n": len(m), "greedy_sharpe_percentile": percentile_of(metrics.loc[track, "sharpe"],
                                                                             m["sharpe"].to_numpy())}
        for key in STITCH_METRICS:
            out[track][key] = {"median": m[key].median(), "p05": m[key].quantile(0.05), "p95": m[key].quantile(0.95)}
    return out


def stitched_summary(s: Stitched) -> dict:
    """The stitched section of walkforward.json."""
    idx = s.returns.index
    return json_safe({
        "mode": "restart" if s.restart_each_fold else "carry",
        "carry": ("every fold starts from cash (a paper restart at no cost)" if s.restart_each_fold else
                  "each path starts a fold from the asset weights its account held at the close before (asset value "
                  "over portfolio value in vectorbt's simulation of the concatenated orders so far)"),
        "first_day": _iso(idx[0]), "last_day": _iso(idx[-1]), "days": len(idx),
        "periods_per_year": periods_per_year(s.data.close.index),
        "policies": {name: _row(row) for name, row in s.table.iterrows()},
        "sampled": s.sampled, "parity_max_rel_diff": s.parity_max_rel_diff,
        "held_folds": {t: f for t, f in s.held_folds.items() if f}})


def _significance(s: Stitched, pairs: dict, entries: list[dict], plan: WalkforwardOptions) -> dict:
    """The tests on the stitched daily returns (reported, never used for a choice), and RL's place in
    each fold's fair random null."""
    baselines = list(baseline_builders(tuple(s.data.tickers)))
    trials = [r["backtest"]["sharpe_per_period"] for _, r in sorted(pairs.items())]
    out = significance(s.returns[MAIN_SERIES], s.returns[BENCHMARK], s.returns[baselines], trials,
                       periods_per_year(s.data.close.index), n_trials=len(entries) * plan.seeds)
    nulls = [{"fold": e["fold"], "ensemble": e["null_percentile"],
              "seeds": {seed: r["null"]["rl_sharpe_percentile"] for seed, r in e["seeds"].items()}} for e in entries]
    return {"readout": f"{MAIN_SERIES}: the seed ensemble's greedy path, stitched", "benchmark": BENCHMARK,
            "baselines": baselines,
            "trials": "per-period Sharpe of each (fold, seed) greedy test window of its fold backtest"
            } | out | {"null_percentile_per_fold": nulls}


def write_outputs(report: dict, stitched: Stitched | None, out: Path) -> Path:
    """`walkforward.json` and the stitched daily returns beside it (greedy series, the ensemble's sampled
    paths, the baselines), both atomic."""
    if stitched is not None:
        keep = [c for c in stitched.returns.columns if ":" not in c or c.startswith(f"{MAIN_SERIES}:")]
        atomic_write_text(out / RETURNS_FILE, stitched.returns[keep].to_csv(float_format="%.12g"))
    return atomic_write_text(out / JSON_FILE, json.dumps(report, indent=1))
