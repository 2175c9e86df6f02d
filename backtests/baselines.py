"""Baseline policies, as target-weight frames simulated by vectorbt with the RL policy's costs.

Each baseline is one entry of `baseline_builders`: a function of the backtest context returning
a weights frame (dates x assets, the decision of each day, NaN rows = no order). Decisions start
on the RL policy's first decision day so every policy is invested over the same period.

RANDOM is a fair null, not a straw man: it switches regime on exactly the days the RL policy
switched (same number of switches, same days) and holds in between, drawing each new regime
uniformly among the regimes other than the one it holds. `random_switch_weights` draws many such
policies at once for the null distribution; RANDOM in the table is its first draw.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from rl_strategy.portfolio import month_starts
from rl_strategy.regimes import HOLD, RegimeTable, rule_weights


@dataclass(frozen=True)
class BaselineContext:
    close: pd.DataFrame            # dates x assets
    regimes: RegimeTable
    first: int                     # row of the first decision
    rl_actions: pd.Series          # the RL policy's regime name per day ("" = no decision)
    initial: str = "cash"          # the starting portfolio ("cash" or a regime name)
    seed: int = 0
    allowed: np.ndarray | None = None  # the policy's action mask (risk limits): the null draws only these


def _empty(ctx: BaselineContext) -> pd.DataFrame:
    return pd.DataFrame(np.nan, index=ctx.close.index, columns=ctx.close.columns)


def _once(ctx: BaselineContext, target: np.ndarray) -> pd.DataFrame:
    """Buy and hold: one order on the first decision day."""
    w = _empty(ctx)
    w.iloc[ctx.first] = target
    return w


def _regime(name: str) -> Callable[[BaselineContext], pd.DataFrame]:
    """Buy and hold a regime of the rule: its weights come from the rule, not the policy's table,
    so the baseline exists whichever regime families the policy was trained with."""
    return lambda ctx: _once(ctx, rule_weights(ctx.regimes.assets, name))


def eq_monthly(ctx: BaselineContext) -> pd.DataFrame:
    """Equal weight, rebalanced on the first decision day and the first trading day of each month."""
    w = _empty(ctx)
    rows = month_starts(ctx.close.index)
    rows = np.union1d(rows[rows >= ctx.first], [ctx.first])
    w.iloc[rows] = 1.0 / w.shape[1]
    return w


def initial_regime(regimes: RegimeTable, initial: str) -> int:
    """Action id of the regime a starting portfolio is (ALL_CASH for "cash")."""
    return regimes.names.index("ALL_CASH" if initial.lower() == "cash" else initial)


def switch_days(rl_actions: pd.Series, regimes: RegimeTable, initial: str) -> np.ndarray:
    """Rows where the RL policy's held regime changes: an order for another regime than the one it
    holds (re-choosing the held regime, or HOLD, is not a switch)."""
    held = initial_regime(regimes, initial)
    ids = {name: i for i, name in enumerate(regimes.names)}
    rows = []
    for row, name in enumerate(rl_actions.to_numpy()):
        action = ids.get(name, HOLD)
        if action != HOLD and action != held:
            rows.append(row)
            held = action
    return np.asarray(rows, dtype=np.int64)


def random_switch_weights(ctx: BaselineContext, n_draws: int) -> np.ndarray:
    """(n_draws, T, n_assets) weights of random policies that switch on the RL policy's switch days,
    each time to a uniformly drawn regime other than the one it holds; NaN rows hold."""
    days = switch_days(ctx.rl_actions, ctx.regimes, ctx.initial)
    rng = np.random.default_rng(ctx.seed)
    held = np.full(n_draws, initial_regime(ctx.regimes, ctx.initial))
    out = np.full((n_draws, len(ctx.close), ctx.close.shape[1]), np.nan)
    if ctx.allowed is not None and not np.all(ctx.allowed):
        return _masked_switches(ctx, days, rng, held, out)
    for row in days:  # a loop over switch days, vectorised over the draws
        pick = rng.integers(1, ctx.regimes.n_actions - 1, size=n_draws)  # n_actions - 2 regimes: all but HOLD, held
        held = pick + (pick >= held)
        out[:, row] = ctx.regimes.weights[held]
    return out


def _masked_switches(ctx: BaselineContext, days: np.ndarray, rng: np.random.Generator, held: np.ndarray,
                     out: np.ndarray) -> np.ndarray:
    """`random_switch_weights` under risk limits: each switch draws among the regimes the policy may
    choose (the mask), other than the one held (a start regime outside the mask is left like any)."""
    choices = np.flatnonzero(ctx.allowed)
    choices = choices[choices != HOLD]
    for row in days:
        holds_a_choice = np.isin(held, choices)
        pick = rng.integers(0, len(choices) - holds_a_choice)
        pick = pick + (holds_a_choice & (choices[pick] >= held))  # skip the held regime
        held = choices[pick]
        out[:, row] = ctx.regimes.weights[held]
    return out


def baseline_builders(assets: tuple[str, ...]) -> dict[str, Callable[[BaselineContext], pd.DataFrame]]:
    """The deterministic baselines for a universe, in display order (RANDOM, drawn with the null,
    is added by the evaluation). Add a baseline here."""
    builders: dict[str, Callable[[BaselineContext], pd.DataFrame]] = {"ALL_CASH": _regime("ALL_CASH")}
    for a in assets:
        builders[f"ALL_{a}"] = _regime(f"ALL_{a}")
    builders["EQ_BUY_HOLD"] = _regime("EQ_WEIGHT")
    builders["EQ_MONTHLY"] = eq_monthly
    return builders
