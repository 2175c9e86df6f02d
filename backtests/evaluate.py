"""Out-of-sample evaluation: what the trained policy does, read honestly.

checkpoint -> `RLPolicy.paths`: the greedy (argmax) path, `samples` sampled paths (the policy as
it was trained) and one path per rolling origin, all in one batched environment run -> weights of
every path, every baseline, the fair random null and the origins' baselines -> two
`simulate_portfolio` calls (one cash-sharing group each, same costs, same starting portfolio) ->
metrics, ranking, criteria, the readouts (sampled band and the greedy path's place in it, the
per-origin Sharpe differences, RL's percentile in the random null) and the parity between the
environment's equity and vectorbt's for every RL path.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from backtests.baselines import BaselineContext, baseline_builders, random_switch_weights
from backtests.criteria import RL_NAME, Criterion, evaluate_criteria, greedy_representative
from backtests.metrics import (
    behaviour_metrics,
    daily_risk_free,
    held_regimes,
    rank_by_sharpe,
    returns_metrics,
    trading_metrics,
)
from backtests.reference import comparison_data, comparison_ticker, reference_table
from rl_strategy.checkpoint import Checkpoint
from rl_strategy.data import MarketData, load_market, load_panel_cache, select_period
from rl_strategy.errors import RLTraderError
from rl_strategy.features import feature_warmup, signal_tickers
from rl_strategy.portfolio import (
    INIT_CASH,
    annualised_sharpe,
    month_starts,
    periods_per_year,
    simulate_portfolio,
    trade_prices,
    value_before_orders,
)
from rl_strategy.regimes import rule_weights
from rl_strategy.risk import action_mask
from rl_strategy.settings import CriteriaSettings, Settings, apply_cli
from rl_strategy.strategy import PolicyPaths, RLPolicy

#: The environment's float64 accounting must match vectorbt's to this relative tolerance.
PARITY_TOLERANCE = 1e-6
POLICY_MODES = ("greedy", "sample")
ORIGIN_MODES = ("monthly", "none")
GREEDY = "greedy"
NOT_REPRESENTATIVE = "the greedy readout is not representative of the trained policy"


@dataclass(frozen=True)
class EvalOptions:
    """How the policy is read out (the CLI flags of `rltrader backtest`)."""

    samples: int = 64                # sampled paths of the stochastic policy
    policy_mode: str = "greedy"      # which path is the table's RL row: greedy, or the sampled path of median Sharpe
    origins: str = "monthly"         # rolling origins: restart at each month's first trading day (or none)
    horizon_days: int = 252          # decisions per origin, clipped at the period end
    initial: str = "cash"            # starting portfolio of every path and baseline: cash or a regime name
    null_draws: int = 200            # random policies of the fair null
    seed: int = 0                    # seeds the sampled paths and the null
    baseline_overlay: bool = False   # run the baselines and the null through the policy's risk overlays

    def check(self) -> EvalOptions:
        if self.policy_mode not in POLICY_MODES:
            raise RLTraderError(f"--policy-mode must be one of {', '.join(POLICY_MODES)}, got {self.policy_mode!r}")
        if self.origins not in ORIGIN_MODES:
            raise RLTraderError(f"--origins must be one of {', '.join(ORIGIN_MODES)}, got {self.origins!r}")
        if self.samples < 2 or self.null_draws < 1 or self.horizon_days < 2:
            raise RLTraderError("--samples must be >= 2, --null-draws >= 1 and --horizon-days >= 2")
        return self


@dataclass
class BacktestResult:
    checkpoint: Checkpoint
    data: MarketData
    costs: dict
    options: EvalOptions
    periods_per_year: int
    weights: dict[str, pd.DataFrame]   # per policy, the decisions over the whole panel
    returns: pd.DataFrame              # evaluation-period daily returns, one column per policy
    benchmark: pd.Series               # equal-weight, rebalanced daily, no costs (the reward's benchmark)
    table: pd.DataFrame                # ranked metrics and behaviour, index = policy names
    criteria: list[Criterion]
    parity_max_rel_diff: float         # over every RL path: greedy, sampled and origins
    rl_regimes: pd.Series              # the regime the RL row chose each evaluation day ("" = no decision)
    overlap_with_training: bool
    rl_behaviour: dict                 # entropy and max-probability along the greedy path, regime shares
    rl_sampled: dict                   # the sampled paths' Sharpe band and the greedy path's percentile
    rolling_origins: dict              # per-origin Sharpe of RL, equal weight and ALL_SPY, and summaries
    random_null: dict                  # RL's Sharpe percentile among random policies switching on its days
    risk_free: str = "0"
    warnings: list[str] = field(default_factory=list)
    comparison_only: tuple[str, ...] = ()  # table rows that are yardsticks, unranked (REF_<ticker>)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.criteria)


def training_period(ckpt: Checkpoint) -> tuple[pd.Timestamp, pd.Timestamp]:
    d = ckpt.training_data
    return pd.Timestamp(d.period_start), pd.Timestamp(d.last_day)


def backtest_settings(ckpt: Checkpoint, **flags) -> Settings:
    """The checkpoint's settings with the backtest's CLI flags on top (same precedence as every
    command). The training run's tensor cache is never reused: a test panel cache is a flag."""
    settings = ckpt.settings
    settings.data.cache_path = None
    return apply_cli(settings, **flags)


def load_backtest_data(settings: Settings, assets: tuple[str, ...], start: str | None = None,
                       end: str | None = None) -> MarketData:
    """The evaluation panel: the policy's universe and the signal tickers its feature sets read
    (`settings.env.features`, the checkpoint's), the settings' test period unless given, and the
    criteria reference's ticker when it lies outside the universe (backtests/reference.py)."""
    d, features = settings.data, settings.env.features
    start = start or settings.periods.test_start
    end = end or settings.periods.test_end
    warmup = feature_warmup(features)

    def load(signals: list[str]) -> MarketData:
        if d.cache_path:  # the cache's rows of the test period only (plus feature warm-up)
            return select_period(load_panel_cache(d.cache_path, tickers=list(assets), signals=signals), start, end,
                                 history_days=warmup)
        return load_market(list(assets), start, end, source=d.source, csv_dir=d.csv_dir, cache_dir=d.cache_dir,
                           seed=d.seed, history_days=warmup, min_days=2, signals=signals)

    return comparison_data(load, list(signal_tickers(features, assets)), settings.criteria.reference, assets)


def risk_free_rates(spec: str | None, settings: Settings, data: MarketData) -> float | pd.Series | None:
    """`--risk-free`: None (0), an annual rate ("0.02"), or a ticker of annual yields in percent
    (e.g. ^IRX) loaded from the settings' data source; a yield quoted at a close applies to the
    next day's return (daily rate = (1 + yield) ** (1 / periods per year) - 1)."""
    if spec is None:
        return None
    try:
        return float(spec)
    except ValueError:
        pass
    d, idx = settings.data, data.panel.index
    quotes = load_market([spec], idx[0], idx[-1], source=d.source, csv_dir=d.csv_dir, cache_dir=d.cache_dir,
                         seed=d.seed).close[spec]
    daily = (1.0 + quotes / 100.0) ** (1.0 / periods_per_year(idx)) - 1.0
    # the panel's first row (feature warm-up, never evaluated) has no earlier quote: it takes its own
    return daily.reindex(idx, method="ffill").shift(1).bfill(limit=1).rename(spec)


def rolling_origin_rows(index: pd.DatetimeIndex, first: int, last: int) -> np.ndarray:
    """The first decision row and the first trading day of every later month, up to the last decision."""
    rows = month_starts(index)
    return np.union1d([first], rows[(rows > first) & (rows <= last)])


def percentile_of(value: float, sample: np.ndarray) -> float:
    """Where `value` falls in `sample`, in percent (mid-rank: ties count half)."""
    sample = np.asarray(sample, dtype=float)
    return float(100.0 * (np.mean(sample < value) + 0.5 * np.mean(sample == value)))


def _summary(sharpe: pd.Series, total: pd.Series | None = None) -> dict:
    out = {"n": int(sharpe.size), "sharpe_median": float(sharpe.median()),
           "sharpe_p05": float(sharpe.quantile(0.05)), "sharpe_p95": float(sharpe.quantile(0.95))}
    if total is not None:
        out["total_return_median"] = float(total.median())
    return out


def _initial_frame(weights: dict[str, pd.DataFrame], starts: dict[str, int], start_w: np.ndarray) -> pd.DataFrame | None:
    """Each group's starting portfolio on the row before its first decision (None: all start in cash)."""
    if not start_w.any():
        return None
    frames = {}
    for name, w in weights.items():
        f = pd.DataFrame(np.nan, index=w.index, columns=w.columns)
        f.iloc[starts[name] - 1] = start_w
        frames[name] = f
    return pd.concat(frames, axis=1, names=["policy", "asset"])


def _window_returns(returns: pd.DataFrame, starts: np.ndarray, lengths: np.ndarray) -> pd.DataFrame:
    """Column i's returns over its window rows starts[i]..starts[i] + lengths[i], aligned by step (NaN pad)."""
    out = np.full((int(lengths.max()) + 1, returns.shape[1]), np.nan)
    values = returns.to_numpy()
    for i, (s, n) in enumerate(zip(starts, lengths, strict=True)):
        out[:n + 1, i] = values[s:s + n + 1, i]
    return pd.DataFrame(out, columns=returns.columns)


def run_backtest(policy: RLPolicy, data: MarketData, *, fees: float | None = None, slippage: float | None = None,
                 execution: str | None = None, allow_overlap: bool = False, thresholds: CriteriaSettings | None = None,
                 options: EvalOptions | None = None, risk_free: float | pd.Series | None = None) -> BacktestResult:
    """Evaluate `policy` on `data`'s period (decisions from its first day; earlier rows are warm-up)."""
    opts = (options or EvalOptions()).check()
    ckpt = policy.checkpoint
    if opts.baseline_overlay and not policy.risk.overlays:
        raise RLTraderError(f"--baseline-overlay: checkpoint {ckpt.path.name} has no risk overlay (risk.vol_target, "
                            "risk.drawdown_brake or risk.rebalance_band) to apply to the baselines")
    ckpt.check_universe(tuple(data.tickers))
    fees = policy.fees if fees is None else fees
    slippage = policy.slippage if slippage is None else slippage
    execution = execution or policy.execution
    thresholds = thresholds or ckpt.settings.criteria
    train_start, train_end = training_period(ckpt)
    overlap = data.period_start <= train_end and data.panel.index[-1] >= train_start
    if overlap and not allow_overlap:
        raise RLTraderError(f"the test period {data.period_start.date()}..{data.panel.index[-1].date()} overlaps the "
                            f"checkpoint's training period {train_start.date()}..{train_end.date()} "
                            "(pass --allow-overlap to run it anyway; the report will flag it)")

    close, open_ = data.close, data.open
    index = close.index
    first, last = max(policy.warmup, data.history_rows()), len(index) - 2
    if first > last:
        raise RLTraderError(f"no decision day in {data.period_start.date()}..{index[-1].date()} "
                            f"after the {policy.warmup}-day feature warm-up")
    ppy = periods_per_year(index)
    sim = dict(fees=fees, slippage=slippage, execution=execution)
    start_w = policy.regimes.initial_weights(opts.initial)

    # 1. Every RL path in one batched environment run, then in one vectorbt call.
    origins = rolling_origin_rows(index, first, last) if opts.origins == "monthly" else np.array([], dtype=np.int64)
    samples = [f"S{k}" for k in range(opts.samples)]
    names = [GREEDY, *samples, *[f"O{r}" for r in origins]]
    seeds = np.random.SeedSequence(opts.seed).generate_state(len(names))
    paths = policy.paths(close, open_, names=names, starts=[index[first]] * (1 + opts.samples) + list(index[origins]),
                         sample=[False] + [True] * opts.samples + [opts.policy_mode == "sample"] * len(origins),
                         seeds=list(seeds), horizons=[None] * (1 + opts.samples) + [opts.horizon_days] * len(origins),
                         initial=opts.initial, signals=data.signal_close, **sim)
    path_weights = {name: paths.weights[name] for name in names}
    pf_paths = simulate_portfolio(paths.weights, open_, close, **sim,
                                  initial=_initial_frame(path_weights, dict(zip(names, paths.first_rows, strict=True)),
                                                         start_w))
    parity = _parity(paths, value_before_orders(pf_paths, close, execution) / INIT_CASH)
    path_returns = pf_paths.returns()
    bench_value = (close / close.shift(1)).mean(axis=1).iloc[first:]
    bench_value.iloc[0] = 1.0  # the benchmark starts at the first decision's close, like the policies
    benchmark = (bench_value - 1.0).rename("EQ_BENCHMARK")
    sampled = returns_metrics(path_returns[[GREEDY, *samples]].iloc[first:], benchmark, ppy, risk_free)
    greedy_pct = percentile_of(sampled.loc[GREEDY, "sharpe"], sampled.loc[samples, "sharpe"].to_numpy())
    sample_sharpe = sampled.loc[samples, "sharpe"].sort_values(kind="mergesort")
    rl_path = GREEDY if opts.policy_mode == "greedy" else str(sample_sharpe.index[(len(samples) - 1) // 2])

    # 2. The table's policies, the fair random null and the origins' baselines in a second call.
    rl_actions = paths.actions[rl_path]
    risk_mask = action_mask(policy.regimes, policy.risk)
    ctx = BaselineContext(close=close, regimes=policy.regimes, first=first, rl_actions=rl_actions,
                          initial=opts.initial, seed=opts.seed, allowed=risk_mask)
    null = random_switch_weights(ctx, opts.null_draws)
    frame = lambda w: pd.DataFrame(w, index=index, columns=close.columns)  # noqa: E731
    weights = {RL_NAME: path_weights[rl_path]} | {name: build(ctx) for name, build in
                                                   baseline_builders(policy.assets).items()}
    weights["RANDOM"] = frame(null[0])
    table_names = list(weights)
    starts = dict.fromkeys(table_names, first)
    for k in range(opts.null_draws):
        weights[f"N{k}"], starts[f"N{k}"] = frame(null[k]), first
    eq = np.full(len(policy.assets), 1.0 / len(policy.assets))
    spy = rule_weights(policy.assets, "ALL_SPY") if "SPY" in policy.assets else None
    for r in origins:
        for tag, target in (("EW", eq), ("SPY", spy)):
            if target is not None:
                w = np.full((len(index), len(policy.assets)), np.nan)
                w[r] = target
                weights[f"O{r}:{tag}"], starts[f"O{r}:{tag}"] = frame(w), int(r)
    if opts.baseline_overlay:  # RL's own weights are already the orders its overlays placed
        others = [k for k in weights if k != RL_NAME]
        overlaid = policy.overlay(close, open_, pd.concat({k: weights[k] for k in others}, axis=1),
                                  [starts[k] for k in others], initial=opts.initial, signals=data.signal_close, **sim)
        weights |= {k: overlaid[k] for k in others}
    stacked = pd.concat(weights, axis=1, names=["policy", "asset"])
    pf = simulate_portfolio(stacked, open_, close, **sim, initial=_initial_frame(weights, starts, start_w))
    returns = pf.returns()

    table = returns_metrics(returns[table_names].iloc[first:], benchmark, ppy, risk_free)
    tprice = trade_prices(open_, close, stacked.columns, execution)
    table = table.join(trading_metrics(pf, first, tprice, ppy).loc[table_names])
    table = rank_by_sharpe(table.join(behaviour_metrics(pf, first).loc[table_names]))
    table_returns = returns[table_names].iloc[first:]
    comparison_only: tuple[str, ...] = ()
    if comparison_ticker(thresholds.reference, policy.assets) is not None:  # unranked, appended
        ref_table, ref_returns = reference_table(data, thresholds.reference, first, benchmark, ppy, risk_free, **sim)
        table, table_returns = pd.concat([table, ref_table]), table_returns.join(ref_returns)
        comparison_only = tuple(ref_table.index)
    criteria = [*evaluate_criteria(table, thresholds), greedy_representative(greedy_pct, thresholds)]

    null_returns = returns[[f"N{k}" for k in range(opts.null_draws)]].iloc[first:]
    null_sharpe = annualised_sharpe(null_returns.sub(daily_risk_free(null_returns.index, risk_free, ppy), axis=0), ppy)
    rl_sharpe = float(table.loc[RL_NAME, "sharpe"])
    random_null = {"n": opts.null_draws, "rl_sharpe_percentile": percentile_of(rl_sharpe, null_sharpe.to_numpy()),
                   "sharpe_median": float(null_sharpe.median()), "sharpe_p95": float(null_sharpe.quantile(0.95))}
    rl_sampled = _summary(sample_sharpe, sampled.loc[samples, "total_return"]) | {
        "greedy_sharpe": float(sampled.loc[GREEDY, "sharpe"]), "greedy_sharpe_percentile": greedy_pct,
        "rl_path": rl_path}
    rolling = _rolling_origins(origins, paths, path_returns, returns, opts, ppy, risk_free)
    warnings = [] if criteria[-1].passed else [
        f"{NOT_REPRESENTATIVE}: its Sharpe {rl_sampled['greedy_sharpe']:.2f} is at the {greedy_pct:.0f}th percentile of "
        f"{opts.samples} sampled paths (5-95%: {rl_sampled['sharpe_p05']:.2f}..{rl_sampled['sharpe_p95']:.2f})"]
    greedy_live = paths.entropy[GREEDY].iloc[first:].dropna()
    behaviour = {"mean_entropy": float(greedy_live.mean()),
                 "mean_max_prob": float(paths.max_prob[GREEDY].iloc[first:].dropna().mean()),
                 "max_entropy": float(np.log(policy.regimes.n_actions)),
                 "regime_share": held_regime_share(rl_actions.iloc[first:], opts.initial)}
    return BacktestResult(checkpoint=ckpt, data=data, costs=sim | {"init_cash": INIT_CASH}, options=opts,
                          periods_per_year=ppy, weights={n: weights[n] for n in table_names},
                          returns=table_returns, benchmark=benchmark, table=table,
                          criteria=criteria, parity_max_rel_diff=parity, rl_regimes=rl_actions.iloc[first:],
                          overlap_with_training=bool(overlap), rl_behaviour=behaviour, rl_sampled=rl_sampled,
                          rolling_origins=rolling, random_null=random_null,
                          risk_free="0" if risk_free is None else (f"{risk_free:g}" if np.isscalar(risk_free)
                                                                   else str(risk_free.name)),
                          warnings=warnings, comparison_only=comparison_only)


def held_regime_share(actions: pd.Series, initial: str = "cash") -> dict[str, float]:
    """Share of days each regime was held (the last order's regime, carried through HOLD days)."""
    shares = held_regimes(actions, initial).value_counts(normalize=True).sort_index()
    return {str(k): float(v) for k, v in shares.items()}


def _parity(paths: PolicyPaths, vbt_value: pd.DataFrame) -> float:
    """Max relative difference between the environment's and vectorbt's equity over every path."""
    env = paths.equity.to_numpy()
    ref = vbt_value[paths.names].to_numpy()
    live = ~np.isnan(env)
    parity = float(np.max(np.abs(env[live] / ref[live] - 1.0)))
    if not parity <= PARITY_TOLERANCE:
        raise RLTraderError(f"accounting parity failed: environment vs vectorbt equity differ by {parity:.2e} "
                            f"(> {PARITY_TOLERANCE:.0e}); the numbers cannot be trusted")
    return parity


def _rolling_origins(origins: np.ndarray, paths: PolicyPaths, path_returns: pd.DataFrame, returns: pd.DataFrame,
                     opts: EvalOptions, ppy: int, risk_free) -> dict:
    """Per origin, the Sharpe of RL, equal weight (bought at the origin) and ALL_SPY over the origin's
    window; summaries of RL minus equal weight. Shows how much a result owes to its start date."""
    if not len(origins):
        return {"n": 0, "horizon_days": opts.horizon_days, "origins": []}
    names = [f"O{r}" for r in origins]
    lengths = paths.lengths[len(paths.names) - len(origins):]
    rf = daily_risk_free(returns.index, risk_free, ppy)  # excess returns before the windows lose their dates
    frames = {"rl": path_returns[names], "ew": returns[[f"{n}:EW" for n in names]]}
    if f"{names[0]}:SPY" in returns:
        frames["spy"] = returns[[f"{n}:SPY" for n in names]]
    windows = pd.concat({tag: _window_returns(f.sub(rf, axis=0), origins, lengths) for tag, f in frames.items()}, axis=1)
    all_sharpe = annualised_sharpe(windows, ppy)
    sharpe = {tag: all_sharpe[tag].to_numpy() for tag in frames}
    diff = sharpe["rl"] - sharpe["ew"]
    dates = paths.equity.index
    rows = [{"start": str(dates[r].date()), "days": int(n) + 1, "rl_sharpe": float(sharpe["rl"][i]),
             "ew_sharpe": float(sharpe["ew"][i]), "spy_sharpe": float(sharpe["spy"][i]) if "spy" in sharpe else None}
            for i, (r, n) in enumerate(zip(origins, lengths, strict=True))]
    return {"n": len(origins), "horizon_days": opts.horizon_days, "mode": opts.policy_mode,
            "median_sharpe_diff_vs_ew": float(np.median(diff)), "share_beats_ew": float(np.mean(diff > 0)),
            "share_beats_spy": float(np.mean(sharpe["rl"] > sharpe["spy"])) if "spy" in sharpe else None,
            "origins": rows}
