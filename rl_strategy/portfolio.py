"""The one place the project calls vectorbt's portfolio simulation.

Weights are decisions: row t is what the policy wants to hold after day t's close (CASH is
1 - row sum, an all-NaN row places no order, a NaN cell leaves that asset alone). The call is
exactly the one in shared/design/cost-accounting.md:

    execution="close":     from_orders(close, size=w, size_type="targetpercent",
                                       cash_sharing=True, call_seq="auto", fees, slippage)
    execution="next_open": the same with size=w.shift(1), price=open_  (fill at the next open;
                           price=open_ without the shift would be look-ahead)

Multi-scenario weights carry MultiIndex columns (scenario..., asset); each scenario becomes
one cash-sharing group. Metrics are annualised over 252 trading days.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from rl_strategy.errors import RLTraderError

EXECUTIONS = ("next_open", "close")
YEAR_FREQ = "252 days"


def _tile(prices: pd.DataFrame, columns: pd.Index) -> pd.DataFrame:
    """Repeat asset prices for every scenario column (the last column level is the asset)."""
    assets = columns.get_level_values(-1) if isinstance(columns, pd.MultiIndex) else columns
    missing = sorted(set(assets) - set(prices.columns))
    if missing:
        raise RLTraderError(f"no prices for {', '.join(map(str, missing))}")
    return pd.DataFrame(prices[list(assets)].to_numpy(), index=prices.index, columns=columns)


def simulate_portfolio(weights: pd.DataFrame, open_: pd.DataFrame | None, close: pd.DataFrame, *,
                       fees: float = 0.001, slippage: float = 0.0, execution: str = "next_open",
                       init_cash: float = 1_000_000.0):
    """Simulate target-weight decisions with vectorbt; returns a grouped `vbt.Portfolio`.

    `init_cash` is large by default so vectorbt's minimum order size (1e-8 units) never binds.
    """
    import vectorbt as vbt

    if execution not in EXECUTIONS:
        raise RLTraderError(f"execution must be one of {', '.join(EXECUTIONS)}, got {execution!r}")
    if not weights.index.equals(close.index):
        raise RLTraderError("weights and prices must share the same dates")
    multi = isinstance(weights.columns, pd.MultiIndex)
    # Group labels: the scenario part of each column (a flat Index when there is one scenario level).
    group_by = weights.columns.droplevel(-1) if multi else True
    filled = weights.fillna(0.0)
    sums = filled.T.groupby(level=list(range(weights.columns.nlevels - 1))).sum().T if multi else filled.sum(axis=1)
    if (filled.to_numpy() < -1e-12).any() or np.max(sums.to_numpy(), initial=0.0) > 1 + 1e-9:
        raise RLTraderError("weights must be in [0, 1] with row sums <= 1 (long only, CASH = 1 - sum)")
    vbt.settings.returns["year_freq"] = YEAR_FREQ  # 252-day annualisation for every metric
    kwargs = dict(size_type="targetpercent", cash_sharing=True, call_seq="auto", group_by=group_by,
                  fees=fees, slippage=slippage, init_cash=init_cash, freq="1D")
    close_t = _tile(close, weights.columns)
    if execution == "close":
        return vbt.Portfolio.from_orders(close_t, size=weights, **kwargs)
    if open_ is None:
        raise RLTraderError("next_open execution needs open prices")
    return vbt.Portfolio.from_orders(close_t, size=weights.shift(1), price=_tile(open_, weights.columns), **kwargs)


def value_before_orders(pf, close: pd.DataFrame, execution: str) -> pd.DataFrame:
    """Group value at each close *before* that close's orders: what the environment marks.

    With next-open execution the orders fill at the open, so this is `pf.value()`. With close
    execution vectorbt's value already includes the orders of that close; the environment's
    step-t value is the previous row's cash plus its units marked at this close.
    """
    if execution == "next_open":
        return pf.value()
    units = pf.assets()
    held = units.shift(1).fillna(0.0) * _tile(close, units.columns).to_numpy()
    held = held.T.groupby(level=list(range(units.columns.nlevels - 1))).sum().T if isinstance(units.columns, pd.MultiIndex) else held.sum(axis=1)
    cash = pf.cash().shift(1)
    cash.iloc[0] = pf.init_cash if np.ndim(pf.init_cash) == 0 else pf.init_cash.to_numpy()
    return cash + held.to_numpy().reshape(cash.shape)
