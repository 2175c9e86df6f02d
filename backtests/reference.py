"""The comparison-only reference: a ticker outside the universe, bought and held like a baseline.

`criteria.reference` may name a ticker the policy does not trade: SPY (or ALL_SPY, the default)
on a sector universe, where ALL_SPY is no baseline. Without it the gap criterion would compare
RL with a Sharpe that does not exist. Its prices load beside the universe as a signal ticker
(same source, calendar and gap rule; `comparison_data`), and vectorbt simulates it as a one-asset
panel: bought from cash on RL's first decision day with the same fees, slippage and execution,
then held. Its row `REF_<ticker>` joins the table unranked: a yardstick for the criterion, not a
policy RL competes with for rank (on the v2 universe ALL_SPY is a baseline and none is loaded).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from backtests.baselines import baseline_builders
from backtests.criteria import REF_PREFIX, reference_row, reference_ticker
from backtests.metrics import behaviour_metrics, returns_metrics, trading_metrics
from rl_strategy.data import MarketData
from rl_strategy.errors import RLTraderError
from rl_strategy.portfolio import simulate_portfolio, trade_prices

#: The table's rows besides the deterministic baselines that a reference may name.
DRAWN_ROWS = ("RANDOM",)


def comparison_ticker(reference: str, assets: Sequence[str]) -> str | None:
    """The ticker to load for `reference`, or None when the reference is a row the backtest has
    anyway (a baseline of this universe such as ALL_SPY or EQ_BUY_HOLD, or RANDOM)."""
    rows = [*baseline_builders(tuple(assets)), *DRAWN_ROWS]
    return None if reference_row(reference, rows) is not None else reference_ticker(reference)


def comparison_data(load: Callable[[list[str]], MarketData], signals: list[str], reference: str,
                    assets: Sequence[str]) -> MarketData:
    """The backtest panel, `load(signals)`, plus the reference's ticker as a signal when it lies
    outside the universe. It is loaded a second time with the ticker so that a failure is named
    after the reference, and refused if the ticker would shorten the backtest's calendar."""
    data = load(signals)
    ticker = comparison_ticker(reference, assets)
    if ticker is None or ticker in data.signals:
        return data
    what = f"criteria.reference {reference} needs {ticker} prices (a ticker outside the universe, bought and held " \
           "for comparison; or set criteria.reference to a baseline such as EQ_BUY_HOLD)"
    try:
        with_ref = load([*signals, ticker])
    except RLTraderError as exc:
        raise RLTraderError(f"{what}: {exc}") from None
    idx, ref_idx = data.panel.index, with_ref.panel.index
    if not ref_idx.equals(idx):
        raise RLTraderError(f"{what}: its prices cover {ref_idx[0].date()}..{ref_idx[-1].date()} of the backtest's "
                            f"{idx[0].date()}..{idx[-1].date()}")
    return with_ref


def reference_table(data: MarketData, reference: str, first: int, benchmark: pd.Series, periods_per_year: int,
                    risk_free: float | pd.Series | None, *, fees: float, slippage: float,
                    execution: str) -> tuple[pd.DataFrame, pd.Series]:
    """The unranked metrics row `REF_<ticker>` and its daily returns from row `first` on."""
    ticker = reference_ticker(reference)
    if ticker not in data.signals:
        raise RLTraderError(f"criteria.reference {reference}: {ticker} is outside the universe and not in the data: "
                            f"load it with backtests.evaluate.load_backtest_data (or load_market(..., signals=[{ticker!r}]))")
    name = f"{REF_PREFIX}{ticker}"
    close, open_ = data.panel["Close"][[ticker]], data.panel["Open"][[ticker]]
    weights = pd.DataFrame(np.nan, index=close.index,
                           columns=pd.MultiIndex.from_tuples([(name, ticker)], names=["policy", "asset"]))
    weights.iloc[first] = 1.0
    pf = simulate_portfolio(weights, open_, close, fees=fees, slippage=slippage, execution=execution)
    returns = pf.returns().iloc[first:]
    if isinstance(returns, pd.Series):  # vectorbt hands back a Series for a single group
        returns = returns.to_frame(name)
    table = returns_metrics(returns, benchmark, periods_per_year, risk_free)
    table = table.join(trading_metrics(pf, first, trade_prices(open_, close, weights.columns, execution),
                                       periods_per_year))
    table = table.join(behaviour_metrics(pf, first))
    table.insert(0, "rank", np.nan)  # unranked: it never moves RL's rank
    return table, returns[name]
