"""Out-of-sample evaluation: the RL policy and the baselines through one vectorbt simulation.

checkpoint -> RLPolicy.run (decisions from data up to each close) -> weights of RL and of every
baseline -> one `simulate_portfolio` call (one cash-sharing group per policy, same costs) ->
metrics, ranking, criteria, and the parity between the environment's equity curve and
vectorbt's for the RL policy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from backtests.baselines import BaselineContext, baseline_builders
from backtests.criteria import RL_NAME, Criterion, evaluate_criteria
from backtests.metrics import rank_by_sharpe, returns_metrics, trading_metrics
from rl_strategy.checkpoint import Checkpoint
from rl_strategy.data import MarketData, load_market, load_panel_cache
from rl_strategy.errors import RLTraderError
from rl_strategy.features import WARMUP
from rl_strategy.portfolio import INIT_CASH, simulate_portfolio, value_before_orders
from rl_strategy.settings import CriteriaSettings, Settings, apply_cli
from rl_strategy.strategy import RLPolicy

#: The environment's float64 accounting must match vectorbt's to this relative tolerance.
PARITY_TOLERANCE = 1e-6


@dataclass
class BacktestResult:
    checkpoint: Checkpoint
    data: MarketData
    costs: dict
    weights: dict[str, pd.DataFrame]   # per policy, the decisions over the whole panel
    returns: pd.DataFrame              # evaluation-period daily returns, one column per policy
    benchmark: pd.Series               # equal-weight, rebalanced daily, no costs (the reward's benchmark)
    table: pd.DataFrame                # ranked metrics, index = policy names
    criteria: list[Criterion]
    parity_max_rel_diff: float
    rl_regimes: pd.Series              # the regime the RL policy chose each evaluation day ("" = HOLD)
    overlap_with_training: bool

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
    """The evaluation panel: the policy's universe, the settings' test period unless given."""
    d = settings.data
    start = start or settings.periods.test_start
    end = end or settings.periods.test_end
    if d.cache_path:
        return load_panel_cache(d.cache_path, tickers=list(assets))
    return load_market(list(assets), start, end, source=d.source, csv_dir=d.csv_dir, cache_dir=d.cache_dir,
                       seed=d.seed, history_days=WARMUP, min_days=2)


def run_backtest(policy: RLPolicy, data: MarketData, *, fees: float | None = None, slippage: float | None = None,
                 execution: str | None = None, allow_overlap: bool = False, seed: int = 0,
                 thresholds: CriteriaSettings | None = None) -> BacktestResult:
    ckpt = policy.checkpoint
    ckpt.check_universe(tuple(data.tickers))
    fees = policy.fees if fees is None else fees
    slippage = policy.slippage if slippage is None else slippage
    execution = execution or policy.execution
    train_start, train_end = training_period(ckpt)
    overlap = data.period_start <= train_end and data.panel.index[-1] >= train_start
    if overlap and not allow_overlap:
        raise RLTraderError(f"the test period {data.period_start.date()}..{data.panel.index[-1].date()} overlaps the "
                            f"checkpoint's training period {train_start.date()}..{train_end.date()} "
                            "(pass --allow-overlap to run it anyway; the report will flag it)")

    close, open_ = data.close, data.open
    run = policy.run(close, open_, start=data.period_start, execution=execution, fees=fees, slippage=slippage)
    first = int(close.index.get_loc(run.first_decision))
    ctx = BaselineContext(close=close, regimes=policy.regimes, first=first, rl_weights=run.weights, seed=seed)
    weights = {RL_NAME: run.weights} | {name: build(ctx) for name, build in baseline_builders(policy.assets).items()}

    stacked = pd.concat(weights, axis=1, names=["policy", "asset"])
    pf = simulate_portfolio(stacked, open_, close, fees=fees, slippage=slippage, execution=execution,
                            init_cash=INIT_CASH)
    marked = value_before_orders(pf, close, execution)[RL_NAME].iloc[first:].to_numpy() / INIT_CASH
    parity = float(np.max(np.abs(run.equity.iloc[first:].to_numpy() / marked - 1.0)))
    if not parity <= PARITY_TOLERANCE:
        raise RLTraderError(f"accounting parity failed: environment vs vectorbt equity differ by {parity:.2e} "
                            f"(> {PARITY_TOLERANCE:.0e}); the numbers cannot be trusted")

    returns = pf.returns().iloc[first:]
    bench_value = (close / close.shift(1)).mean(axis=1).iloc[first:]
    bench_value.iloc[0] = 1.0  # the benchmark starts at the first decision's close, like the policies
    benchmark = (bench_value - 1.0).rename("EQ_BENCHMARK")
    table = returns_metrics(returns, benchmark).join(trading_metrics(pf, first))
    table = rank_by_sharpe(table)
    criteria = evaluate_criteria(table, thresholds or ckpt.settings.criteria)
    return BacktestResult(checkpoint=ckpt, data=data,
                          costs={"fees": fees, "slippage": slippage, "execution": execution},
                          weights=weights, returns=returns, benchmark=benchmark, table=table, criteria=criteria,
                          parity_max_rel_diff=parity, rl_regimes=run.actions.iloc[first:],
                          overlap_with_training=bool(overlap))
