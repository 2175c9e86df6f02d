"""The one place the project calls vectorbt's portfolio simulation.

Weights are decisions: row t is what the policy wants to hold after day t's close (CASH is
1 - row sum, an all-NaN row places no order, a NaN cell leaves that asset alone). The call is
exactly the one in docs/cost-accounting.md:

    execution="close":     from_orders(close, size=w, size_type="targetpercent",
                                       cash_sharing=True, call_seq="auto", fees, slippage)
    execution="next_open": the same with size=w.shift(1), price=open_  (fill at the next open;
                           price=open_ without the shift would be look-ahead)

Multi-scenario weights carry MultiIndex columns (scenario..., asset); each scenario becomes
one cash-sharing group. Annualisation is passed explicitly, never set in `vbt.settings`: a
researcher's session keeps its own settings. Metrics annualise with the panel calendar's own
rows per year (`periods_per_year`: 252 on NYSE data, ~261 on the synthetic business-day
market); `YEAR_FREQ` is the NYSE default.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from rl_strategy.errors import RLTraderError

EXECUTIONS = ("next_open", "close")
YEAR_FREQ = "252 days"  # NYSE trading days per year; metrics use `year_freq(periods_per_year(index))`
#: A calendar year is complete when the index has a row in its first and in its last this many days.
YEAR_EDGE_DAYS = 7
#: Default starting cash: large, so vectorbt's minimum order size (1e-8 units) never binds.
INIT_CASH = 1_000_000.0
#: Weights must lie in [-WEIGHT_TOL, 1 + WEIGHT_TOL] and sum to at most 1 + WEIGHT_TOL per row.
WEIGHT_TOL = 1e-9


def check_execution(execution: str, what: str = "execution") -> str:
    """The one validation of an execution mode (a one-line error at every boundary)."""
    if execution not in EXECUTIONS:
        raise RLTraderError(f"{what} must be one of {', '.join(EXECUTIONS)}, got {execution!r}")
    return execution


def periods_per_year(index: pd.DatetimeIndex) -> int:
    """Rows per year of the panel's own calendar: the one definition of annualisation.

    The median row count over complete calendar years (a row in the year's first and last
    `YEAR_EDGE_DAYS` days): 252 on NYSE data, 261 on business days without holidays. Without
    a complete year, the row rate (rows - 1) / (span in years of 365.25 days), rounded.
    """
    index = pd.DatetimeIndex(index)
    if len(index) < 2:
        raise RLTraderError("periods per year needs at least two dates")
    years = index.to_series().groupby(index.year).agg(["min", "max", "size"])
    complete = ((years["min"].dt.day_of_year <= YEAR_EDGE_DAYS) & (years["max"].dt.month == 12)
                & (years["max"].dt.day > 31 - YEAR_EDGE_DAYS))
    if complete.any():
        return int(round(float(years.loc[complete, "size"].median())))
    span_years = (index.max() - index.min()).days / 365.25
    return int(round((len(index) - 1) / span_years))


def month_starts(index: pd.DatetimeIndex) -> np.ndarray:
    """Rows of the first trading day of each month of a calendar (the first row counts as one)."""
    month = pd.DatetimeIndex(index).to_period("M")
    return np.flatnonzero(np.r_[True, month[1:] != month[:-1]])


def year_freq(periods: int) -> str:
    """vectorbt's `year_freq` for `periods` rows per year (each row is `freq="1D"` here)."""
    return f"{periods} days"


def annualised_sharpe(returns: pd.DataFrame, periods: int) -> pd.Series:
    """vectorbt's Sharpe ratio of each column (NaN rows ignored), `periods` rows a year; a series
    with zero volatility (all cash) gets 0, so it ranks. The one Sharpe of the project: the
    backtest's metrics and training's validation score both use it."""
    import vectorbt  # noqa: F401  (registers the .vbt accessor; ~3 s, kept out of module import)

    acc = returns.vbt.returns(freq="1D", year_freq=year_freq(periods))
    flat = acc.annualized_volatility() == 0.0
    return acc.sharpe_ratio().mask(flat, 0.0)


def _assets(columns: pd.Index) -> pd.Index:
    """Asset labels of weight columns (the last level of a MultiIndex)."""
    return columns.get_level_values(-1) if isinstance(columns, pd.MultiIndex) else columns


def _tile(prices: pd.DataFrame, columns: pd.Index) -> pd.DataFrame:
    """Repeat asset prices for every scenario column (the last column level is the asset)."""
    return pd.DataFrame(prices[list(_assets(columns))].to_numpy(), index=prices.index, columns=columns)


def _scenario_groups(columns: pd.Index) -> pd.Index:
    """One cash-sharing group per scenario: the column labels without the asset level."""
    groups = columns.droplevel(-1)
    codes = pd.factorize(groups)[0]
    if (np.diff(codes) < 0).any() or (np.diff(codes) > 1).any():
        raise RLTraderError("each scenario's asset columns must be adjacent (vectorbt groups are contiguous)")
    return groups


def _check(weights: pd.DataFrame, open_: pd.DataFrame | None, close: pd.DataFrame, execution: str) -> None:
    """One-line errors for what vectorbt would accept silently or fail on obscurely."""
    check_execution(execution)
    if execution == "next_open" and open_ is None:
        raise RLTraderError("next_open execution needs open prices")
    for name, prices in (("close", close), ("open", open_)):
        if prices is None:
            continue
        if not weights.index.equals(prices.index):
            raise RLTraderError(f"weights and {name} prices must share the same dates")
        missing = sorted(set(_assets(weights.columns)) - set(prices.columns), key=str)
        if missing:
            raise RLTraderError(f"no {name} prices for {', '.join(map(str, missing))}")
    values = weights.to_numpy(dtype=np.float64)
    if not (np.isnan(values) | ((values >= -WEIGHT_TOL) & (values <= 1 + WEIGHT_TOL))).all():
        raise RLTraderError("weights must be in [0, 1] (long only, CASH = 1 - row sum)")
    filled = np.nan_to_num(values, nan=0.0)
    if isinstance(weights.columns, pd.MultiIndex):  # per scenario: sum its asset columns
        codes = pd.factorize(weights.columns.droplevel(-1))[0]
        sums = np.zeros((len(values), codes.max() + 1))
        np.add.at(sums.T, codes, filled.T)
    else:
        sums = filled.sum(axis=1)
    if np.max(sums, initial=0.0) > 1 + WEIGHT_TOL:
        raise RLTraderError("weights must have row sums <= 1 (CASH = 1 - row sum)")


def simulate_portfolio(weights: pd.DataFrame, open_: pd.DataFrame | None, close: pd.DataFrame, *,
                       fees: float = 0.001, slippage: float = 0.0, execution: str = "next_open",
                       init_cash: float = INIT_CASH, group_by=None, initial: pd.DataFrame | None = None):
    """Simulate target-weight decisions with vectorbt; returns a cash-sharing `vbt.Portfolio`.

    `group_by=None` makes one group per scenario (all column levels but the asset) or, for flat
    columns, one group. `init_cash` is large by default so vectorbt's minimum order size (1e-8
    units) never binds; divide `pf.value()` by it for an equity curve starting at 1.

    `initial` (same shape as `weights`, NaN elsewhere) gives a starting portfolio: its non-NaN row
    of a group is held from that row's close, acquired there at no cost (fees and slippage 0 on
    that row only), as an account that already holds it. The row must place no other order.

    Annualisation is not changed globally: ask for it per call, e.g.
    `pf.sharpe_ratio(year_freq=YEAR_FREQ)`, which equals `quantstats.stats.sharpe(pf.returns(), periods=252)`.
    """
    _check(weights, open_, close, execution)
    import vectorbt as vbt  # ~3 s; kept out of module import

    if group_by is None:
        group_by = _scenario_groups(weights.columns) if isinstance(weights.columns, pd.MultiIndex) else True
    close_t = _tile(close, weights.columns)
    # The decision of day t fills at day t+1's open: price=open_ without the shift is look-ahead.
    size, price = (weights, close_t) if execution == "close" else (weights.shift(1), _tile(open_, weights.columns))
    if initial is not None:
        if not initial.columns.equals(weights.columns):
            raise RLTraderError("initial portfolios must have the weights' columns")
        _check(initial, open_, close, execution)
        setup = initial.notna().to_numpy()
        if (setup & size.notna().to_numpy()).any():
            raise RLTraderError("an initial portfolio's row also holds an order (start it a row earlier)")
        size, price = size.mask(setup, initial), price.mask(setup, close_t)
        fees = pd.DataFrame(fees, index=weights.index, columns=weights.columns).mask(setup, 0.0)
        slippage = pd.DataFrame(slippage, index=weights.index, columns=weights.columns).mask(setup, 0.0)
    return vbt.Portfolio.from_orders(close_t, size=size, price=price, size_type="targetpercent", cash_sharing=True,
                                     call_seq="auto", group_by=group_by, fees=fees, slippage=slippage,
                                     init_cash=init_cash, freq="1D")


def trade_prices(open_: pd.DataFrame | None, close: pd.DataFrame, columns: pd.Index, execution: str) -> pd.DataFrame:
    """The price each row's orders fill at before slippage, tiled to the weight columns as
    `simulate_portfolio` passes it: the open for next_open execution, the close for close."""
    if check_execution(execution) == "next_open" and open_ is None:
        raise RLTraderError("next_open execution needs open prices")
    return _tile(close if execution == "close" else open_, columns)


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
    cash = pf.cash().shift(1)
    cash.iloc[0] = pf.init_cash if np.ndim(pf.init_cash) == 0 else pf.init_cash.to_numpy()
    if isinstance(units.columns, pd.MultiIndex):  # sum each scenario's assets, in the groups' order
        held = held.T.groupby(level=list(range(units.columns.nlevels - 1)), sort=False).sum().T
        return cash + held.reindex(columns=cash.columns)
    return cash + held.sum(axis=1)
