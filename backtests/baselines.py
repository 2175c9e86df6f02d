"""Baseline policies, as target-weight frames simulated by vectorbt with the RL policy's costs.

Each baseline is one entry of `BASELINES`: a function of the backtest context returning a
weights frame (dates x assets, the decision of each day, NaN rows = no order). Decisions start
on the RL policy's first decision day so every policy is invested over the same period.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from rl_strategy.regimes import RegimeTable


@dataclass(frozen=True)
class BaselineContext:
    close: pd.DataFrame            # dates x assets
    regimes: RegimeTable
    first: int                     # row of the first decision
    rl_weights: pd.DataFrame       # the RL policy's decisions (to match its decision days)
    seed: int = 0


def _empty(ctx: BaselineContext) -> pd.DataFrame:
    return pd.DataFrame(np.nan, index=ctx.close.index, columns=ctx.close.columns)


def _once(ctx: BaselineContext, target: np.ndarray) -> pd.DataFrame:
    """Buy and hold: one order on the first decision day."""
    w = _empty(ctx)
    w.iloc[ctx.first] = target
    return w


def _regime(name: str) -> Callable[[BaselineContext], pd.DataFrame]:
    return lambda ctx: _once(ctx, ctx.regimes.weights[ctx.regimes.names.index(name)])


def eq_monthly(ctx: BaselineContext) -> pd.DataFrame:
    """Equal weight, rebalanced on the first decision day and the first trading day of each month."""
    w = _empty(ctx)
    idx = ctx.close.index
    month = idx.to_period("M")
    first_of_month = np.r_[True, month[1:] != month[:-1]]
    rows = np.flatnonzero(first_of_month)
    rows = np.union1d(rows[rows >= ctx.first], [ctx.first])
    w.iloc[rows] = 1.0 / w.shape[1]
    return w


def random_regimes(ctx: BaselineContext) -> pd.DataFrame:
    """A seeded random non-HOLD regime on exactly the days the RL policy placed orders."""
    w = _empty(ctx)
    days = np.flatnonzero(~np.isnan(ctx.rl_weights.to_numpy()).all(axis=1))
    rng = np.random.default_rng(ctx.seed)
    picks = rng.integers(1, ctx.regimes.n_actions, size=len(days))
    w.iloc[days] = ctx.regimes.weights[picks]
    return w


def baseline_builders(assets: tuple[str, ...]) -> dict[str, Callable[[BaselineContext], pd.DataFrame]]:
    """All baselines for a universe, in display order. Add a baseline here."""
    builders: dict[str, Callable[[BaselineContext], pd.DataFrame]] = {"ALL_CASH": _regime("ALL_CASH")}
    for a in assets:
        builders[f"ALL_{a}"] = _regime(f"ALL_{a}")
    builders["EQ_BUY_HOLD"] = _regime("EQ_WEIGHT")
    builders["EQ_MONTHLY"] = eq_monthly
    builders["RANDOM"] = random_regimes
    return builders
