"""Performance metrics of simulated portfolios, from vectorbt's and quantstats' own functions.

Nothing here re-implements a ratio: Sharpe, Sortino, CAGR, volatility, drawdown and Calmar
come from vectorbt's returns accessor, annualised with the panel calendar's rows per year
(`periods_per_year`, see rl_strategy.portfolio; with n rows a year they equal quantstats'
`sharpe(r, periods=n)` etc. to ~1e-14). Sharpe and Sortino are on excess returns r - rf,
everything else on raw returns. An annual risk-free rate converts to a per-row rate as
quantstats' `to_excess_returns` does, (1 + rate) ** (1 / n) - 1, so `sharpe(r, rf=rate,
periods=n)` is reproduced; a Series is already per row (quantstats would de-annualise it too).
A zero-volatility series such as ALL_CASH gets Sharpe and Sortino 0, so it ranks between the
positive and the negative policies (quantstats gives NaN), and Calmar NaN. Against the
equal-weight benchmark: the information ratio (mean over std of daily active returns, not
annualised, as quantstats defines it) and vectorbt's alpha, the compounded annual form of
quantstats' greeks alpha: (1 + alpha_qs / n)^n - 1. (vectorbt is used rather than quantstats
here: importing quantstats costs ~2.5 s.)
Turnover is defined here because neither library has it: per day and group, with P the trade
price (the open for next_open execution, the close for close) and u the units held,

    turnover_t = (sum_j |u_t,j - u_t-1,j| * P_t,j + |cash_t - cash_t-1|) / (2 * V_t)
    V_t        = cash_t-1 + sum_j u_t-1,j * P_t,j        (the value before that day's orders)

the one-way turnover counting the cash leg: CASH -> 100% SPY, SPY -> QQQ and cash -> 50/50 all
count 1.0 (without fees). `turnover` is its mean over the evaluation days, `turnover_annual`
that mean times the periods per year.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from rl_strategy.errors import RLTraderError
from rl_strategy.portfolio import annualised_sharpe, year_freq

#: The columns of the ranked table, in display order (the JSON report, the terminal and the
#: comparison page all use this list).
METRICS = ("sharpe", "sortino", "cagr", "total_return", "volatility", "max_drawdown", "calmar",
           "turnover", "turnover_annual", "rebalances", "alpha", "information_ratio")
#: Metrics that are fractions shown as percent, and those that are counts.
PERCENT_METRICS = frozenset({"cagr", "total_return", "volatility", "max_drawdown", "turnover", "turnover_annual",
                             "alpha"})
COUNT_METRICS = frozenset({"rank", "rebalances"})


def daily_risk_free(index: pd.DatetimeIndex, risk_free: float | pd.Series | None, periods_per_year: int) -> pd.Series:
    """Per-row risk-free rates on `index`: an annual rate de-annualised as quantstats does, a
    Series of per-row rates carried forward from its last print (none before its first)."""
    if risk_free is None:
        return pd.Series(0.0, index=index)
    if not isinstance(risk_free, pd.Series):
        return pd.Series((1.0 + float(risk_free)) ** (1.0 / periods_per_year) - 1.0, index=index)
    aligned = risk_free.astype(float).reindex(index.union(risk_free.index)).ffill().reindex(index)
    if aligned.isna().any():
        raise RLTraderError(f"no risk-free rate on or before {aligned.index[aligned.isna()][0].date()}")
    return aligned


def returns_metrics(returns: pd.DataFrame, benchmark: pd.Series, periods_per_year: int = 252,
                    risk_free: float | pd.Series | None = None) -> pd.DataFrame:
    """Return-based metrics per column (policy) of a daily returns frame, `periods_per_year`
    rows a year; Sharpe and Sortino over `risk_free` (None: 0, float: annual, Series: per row)."""
    import vectorbt  # noqa: F401  (registers the .vbt accessor; ~3 s, kept out of module import)

    kwargs = dict(freq="1D", year_freq=year_freq(periods_per_year))
    acc = returns.vbt.returns(**kwargs)
    excess_returns = returns.sub(daily_risk_free(returns.index, risk_free, periods_per_year), axis=0)
    out = pd.DataFrame({
        "sharpe": annualised_sharpe(excess_returns, periods_per_year),
        "sortino": excess_returns.vbt.returns(**kwargs).sortino_ratio(),
        "cagr": acc.annualized(),
        "total_return": acc.total(),
        "volatility": acc.annualized_volatility(),
        "max_drawdown": acc.max_drawdown(),
        "calmar": acc.calmar_ratio(),
        "information_ratio": acc.information_ratio(benchmark),
        "alpha": acc.alpha(benchmark),
    })
    flat = out["volatility"] == 0.0  # all cash: Sharpe 0 (annualised_sharpe), Sortino 0, Calmar undefined
    out.loc[flat, "sortino"] = 0.0
    out.loc[flat, "calmar"] = np.nan
    return out


def trading_metrics(pf, first: int, trade_price: pd.DataFrame, periods_per_year: int = 252) -> pd.DataFrame:
    """Turnover (the cash leg included, see the module docstring) and the number of days with
    an order, per group over rows >= first. `trade_price` is the tiled price frame the orders
    filled at (`rl_strategy.portfolio.trade_prices`)."""
    units = pf.assets()
    if not trade_price.columns.equals(pf.wrapper.columns) or not trade_price.index.equals(units.index):
        raise RLTraderError("trade prices must have the portfolio's dates and columns")
    groups = pf.wrapper.grouper.get_groups()  # group id per column
    to_group = np.eye(groups.max() + 1)[groups]  # (columns, groups): sums each group's assets
    price = trade_price.to_numpy(dtype=np.float64)
    u = _2d(units)
    u_prev = np.vstack([np.zeros((1, u.shape[1])), u[:-1]])
    cash = _2d(pf.cash())
    cash_prev = np.vstack([np.broadcast_to(pf.init_cash, (1, cash.shape[1])), cash[:-1]])
    traded = np.abs(u - u_prev) * price @ to_group + np.abs(cash - cash_prev)
    value = cash_prev + u_prev * price @ to_group
    turnover = (traded / (2.0 * value))[first:].mean(axis=0)
    records = pf.orders.values
    ordered = np.zeros_like(value, dtype=bool)
    ordered[records["idx"], groups[records["col"]]] = True
    return pd.DataFrame({"turnover": turnover, "turnover_annual": turnover * periods_per_year,
                         "rebalances": ordered[first:].sum(axis=0)}, index=pf.wrapper.get_columns())


def _2d(frame: pd.Series | pd.DataFrame) -> np.ndarray:
    """Dates x columns values: vectorbt hands back a Series for a portfolio of one column or group."""
    return frame.to_numpy().reshape(len(frame), -1)


def rank_by_sharpe(table: pd.DataFrame) -> pd.DataFrame:
    """Sort by Sharpe (NaN last) and add a 1-based rank."""
    table = table.sort_values("sharpe", ascending=False, na_position="last", kind="mergesort")
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    return table


def behaviour_metrics(pf, first: int) -> pd.DataFrame:
    """How each group behaved over rows >= first: `time_in_market`, the share of days ending with
    non-zero exposure (asset value above 1e-9 of the portfolio's), and `first_trade`, the date of
    its first order (None if it never traded)."""
    exposure = _2d(pf.asset_value())[first:] > 1e-9 * _2d(pf.value())[first:]
    records = pf.orders.values
    groups = pf.wrapper.grouper.get_groups()
    n_groups = exposure.shape[1]
    first_idx = np.full(n_groups, np.iinfo(np.int64).max)
    late = records["idx"] >= first
    np.minimum.at(first_idx, groups[records["col"][late]], records["idx"][late])
    dates = pf.wrapper.index
    return pd.DataFrame({"time_in_market": exposure.mean(axis=0),
                         "first_trade": [str(dates[i].date()) if i < len(dates) else None for i in first_idx]},
                        index=pf.wrapper.get_columns())


def held_regimes(actions: pd.Series, initial: str = "cash") -> pd.Series:
    """The regime held each day: the last order's regime carried through HOLD (and no-decision)
    days, the starting portfolio before the first order ("cash" is ALL_CASH)."""
    held = actions.replace({"": np.nan, "HOLD": np.nan}).ffill()
    return held.fillna("ALL_CASH" if initial.lower() == "cash" else initial)
