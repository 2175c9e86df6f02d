"""Performance metrics of simulated portfolios, from vectorbt's and quantstats' own functions.

Nothing here re-implements a ratio: Sharpe, Sortino, CAGR, volatility, drawdown and Calmar
come from vectorbt's returns accessor with 252-day annualisation (equal to quantstats'
`sharpe(r, periods=252)` etc. to ~1e-14; a zero-volatility series such as ALL_CASH gets NaN
ratios, as in quantstats). Against the equal-weight benchmark: the information ratio (mean
over std of daily active returns, not annualised, as quantstats defines it) and vectorbt's
alpha, the compounded annual form of quantstats' greeks alpha: (1 + alpha_qs / 252)^252 - 1.
(vectorbt is used rather than quantstats here: importing quantstats costs ~2.5 s.)
Turnover is defined here because neither library has it:

    turnover = mean over days of  sum_j |traded value_j| / 2 / portfolio value

(mean daily one-way turnover, traded value from vectorbt's order records, value at the close).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from rl_strategy.portfolio import YEAR_FREQ

#: The columns of the ranked table, in display order (the JSON report, the terminal and the
#: comparison page all use this list).
METRICS = ("sharpe", "sortino", "cagr", "total_return", "volatility", "max_drawdown", "calmar",
           "turnover", "rebalances", "alpha", "information_ratio")
#: Metrics that are fractions shown as percent, and those that are counts.
PERCENT_METRICS = frozenset({"cagr", "total_return", "volatility", "max_drawdown", "turnover", "alpha"})
COUNT_METRICS = frozenset({"rank", "rebalances"})


def returns_metrics(returns: pd.DataFrame, benchmark: pd.Series) -> pd.DataFrame:
    """Return-based metrics per column (policy) of a daily returns frame."""
    acc = returns.vbt.returns(freq="1D", year_freq=YEAR_FREQ)
    out = pd.DataFrame({
        "sharpe": acc.sharpe_ratio(),
        "sortino": acc.sortino_ratio(),
        "cagr": acc.annualized(),
        "total_return": acc.total(),
        "volatility": acc.annualized_volatility(),
        "max_drawdown": acc.max_drawdown(),
        "calmar": acc.calmar_ratio(),
        "information_ratio": acc.information_ratio(benchmark),
        "alpha": acc.alpha(benchmark),
    })
    flat = out["volatility"] == 0.0
    out.loc[flat, ["sharpe", "sortino", "calmar"]] = np.nan
    return out


def trading_metrics(pf, first: int) -> pd.DataFrame:
    """Turnover and number of rebalancing days per group from the order records, rows >= first."""
    records = pf.orders.values
    n_rows, n_cols = pf.wrapper.shape
    traded = np.zeros((n_rows, n_cols))
    np.add.at(traded, (records["idx"], records["col"]), np.abs(records["size"] * records["price"]))
    groups = pf.wrapper.grouper.get_groups()  # group id per column
    n_groups = groups.max() + 1
    per_group = np.zeros((n_rows, n_groups))
    for col in range(n_cols):
        per_group[:, groups[col]] += traded[:, col]
    value = pf.value().to_numpy()
    daily = per_group[first:] / 2.0 / value[first:]
    return pd.DataFrame({"turnover": daily.mean(axis=0), "rebalances": (per_group[first:] > 0).sum(axis=0)},
                        index=pf.wrapper.get_columns())


def rank_by_sharpe(table: pd.DataFrame) -> pd.DataFrame:
    """Sort by Sharpe (NaN last, e.g. ALL_CASH) and add a 1-based rank."""
    table = table.sort_values("sharpe", ascending=False, na_position="last", kind="mergesort")
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    return table
