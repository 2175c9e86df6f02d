"""Known answers of the metrics: the calendar's annualisation, Sharpe/Sortino over a risk-free
rate against quantstats, the all-cash ranking, and turnover counting the cash leg."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from backtests.metrics import METRICS, PERCENT_METRICS, rank_by_sharpe, returns_metrics, trading_metrics
from rl_strategy.errors import RLTraderError
from rl_strategy.portfolio import periods_per_year, simulate_portfolio, trade_prices, year_freq

DATES = pd.bdate_range("2021-03-01", periods=12)
CLOSE = pd.DataFrame({"SPY": [100, 101, 99, 102, 104, 103, 105, 107, 106, 108, 110, 109.0],
                      "QQQ": [50, 52, 51, 53, 52, 55, 56, 54, 57, 58, 57, 59.0]}, index=DATES)
OPEN = CLOSE.shift(1).fillna(CLOSE) * 1.003  # the open is never the previous close
FIRST = 2  # the first decision row


def decisions(rows: dict[int, list[float]]) -> pd.DataFrame:
    """HOLD (NaN) everywhere but the given rows."""
    w = pd.DataFrame(np.nan, index=DATES, columns=CLOSE.columns)
    for t, row in rows.items():
        w.iloc[t] = row
    return w


def turnover_of(weights: pd.DataFrame, execution: str, fees: float = 0.0, slippage: float = 0.0,
                periods: int = 252) -> pd.DataFrame:
    pf = simulate_portfolio(weights, OPEN, CLOSE, fees=fees, slippage=slippage, execution=execution)
    return trading_metrics(pf, FIRST, trade_prices(OPEN, CLOSE, weights.columns, execution), periods)


def test_periods_per_year_of_the_nyse_calendar_is_252(market_dir):
    spy = pd.read_csv(market_dir / "SPY.csv", index_col="Date", parse_dates=True)
    assert periods_per_year(spy.loc["2015-01-01":"2024-12-31"].index) == 252


def test_periods_per_year_of_business_days_is_261():
    assert periods_per_year(pd.bdate_range("2015-01-01", "2024-12-31")) == 261
    # incomplete first and last years are left out of the median
    assert periods_per_year(pd.bdate_range("2014-07-01", "2025-03-14")) == 261
    assert year_freq(261) == "261 days"


def test_periods_per_year_without_a_complete_year_is_the_row_rate():
    index = pd.bdate_range("2024-01-01", "2024-06-30")  # 130 rows, 2024-01-01..2024-06-28: 179 days
    assert periods_per_year(index) == round(129 / (179 / 365.25)) == 263
    with pytest.raises(RLTraderError, match="at least two dates"):
        periods_per_year(index[:1])


@pytest.fixture(scope="module")
def returns() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    index = pd.bdate_range("2020-01-01", periods=600)
    return pd.DataFrame({"UP": rng.normal(6e-4, 0.011, 600), "DOWN": rng.normal(-4e-4, 0.009, 600),
                         "ALL_CASH": 0.0}, index=index)


@pytest.fixture(scope="module")
def benchmark(returns) -> pd.Series:
    return returns[["UP", "DOWN"]].mean(axis=1).rename("EQ_BENCHMARK")


@pytest.mark.parametrize("periods", [252, 261])
def test_sharpe_and_sortino_over_an_annual_risk_free_rate_match_quantstats(returns, benchmark, periods):
    import quantstats as qs

    rate = 0.03
    out = returns_metrics(returns, benchmark, periods, risk_free=rate)
    for col in ("UP", "DOWN"):
        assert out.loc[col, "sharpe"] == pytest.approx(qs.stats.sharpe(returns[col], rf=rate, periods=periods),
                                                       rel=1e-12)
        assert out.loc[col, "sortino"] == pytest.approx(qs.stats.sortino(returns[col], rf=rate, periods=periods),
                                                        rel=1e-12)
    # the rate lowers Sharpe and Sortino only; every other metric stays on raw returns
    raw = returns_metrics(returns, benchmark, periods)
    assert (out.loc[["UP", "DOWN"], "sharpe"] < raw.loc[["UP", "DOWN"], "sharpe"]).all()
    others = [c for c in raw.columns if c not in ("sharpe", "sortino")]
    pd.testing.assert_frame_equal(out[others], raw[others])


def test_a_per_day_risk_free_series_is_subtracted_as_given(returns, benchmark):
    import quantstats as qs

    daily = pd.Series(np.linspace(0.5e-4, 1.5e-4, len(returns)), index=returns.index)
    out = returns_metrics(returns, benchmark, 252, risk_free=daily)
    assert out.loc["UP", "sharpe"] == pytest.approx(qs.stats.sharpe(returns["UP"] - daily, periods=252), rel=1e-12)
    assert out.loc["UP", "sortino"] == pytest.approx(qs.stats.sortino(returns["UP"] - daily, periods=252), rel=1e-12)
    # a rate printed on fewer dates is carried forward from its last print
    weekly = daily.iloc[::5]
    carried = returns_metrics(returns, benchmark, 252, risk_free=weekly)
    expected = qs.stats.sharpe(returns["UP"] - weekly.reindex(returns.index).ffill(), periods=252)
    assert carried.loc["UP", "sharpe"] == pytest.approx(expected, rel=1e-12)
    with pytest.raises(RLTraderError, match="no risk-free rate on or before 2020-01-01"):
        returns_metrics(returns, benchmark, 252, risk_free=daily.iloc[1:])


def test_261_periods_scale_sharpe_by_sqrt_261_over_252(returns, benchmark):
    nyse = returns_metrics(returns, benchmark, 252)
    bdays = returns_metrics(returns, benchmark, 261)
    for metric in ("sharpe", "sortino", "volatility"):
        ratio = bdays.loc[["UP", "DOWN"], metric] / nyse.loc[["UP", "DOWN"], metric]
        np.testing.assert_allclose(ratio, np.sqrt(261 / 252), rtol=1e-12)
    assert bdays.loc["UP", "cagr"] == pytest.approx((1 + nyse.loc["UP", "total_return"]) ** (261 / 600) - 1,
                                                    rel=1e-12)


@pytest.mark.parametrize("risk_free", [None, 0.03])
def test_all_cash_gets_sharpe_0_and_ranks_above_a_negative_policy(returns, benchmark, risk_free):
    out = returns_metrics(returns, benchmark, 252, risk_free=risk_free)
    assert out.loc["ALL_CASH", ["sharpe", "sortino"]].tolist() == [0.0, 0.0]
    assert np.isnan(out.loc["ALL_CASH", "calmar"])
    assert out.loc["UP", "sharpe"] > 0 > out.loc["DOWN", "sharpe"]
    ranked = rank_by_sharpe(out)
    assert ranked.index.tolist() == ["UP", "ALL_CASH", "DOWN"]
    assert ranked["rank"].tolist() == [1, 2, 3]


def test_turnover_annual_is_a_listed_percent_metric():
    assert METRICS[METRICS.index("turnover") + 1] == "turnover_annual"
    assert {"turnover", "turnover_annual"} <= PERCENT_METRICS


@pytest.mark.parametrize("execution", ["next_open", "close"])
@pytest.mark.parametrize(("rows", "one_way"), [
    ({FIRST: [1.0, 0.0]}, 1.0),                    # CASH -> 100% SPY, then hold
    ({FIRST: [0.5, 0.5]}, 1.0),                    # cash -> 50/50
    ({FIRST: [0.3, 0.0]}, 0.3),                    # cash -> 30% SPY
    ({FIRST: [1.0, 0.0], 6: [0.0, 1.0]}, 2.0),     # CASH -> SPY, later SPY -> QQQ (1.0 that day)
    ({FIRST: [1.0, 0.0], 6: [0.0, 0.0]}, 2.0),     # CASH -> SPY, later SPY -> CASH
], ids=["cash-spy", "cash-5050", "cash-30", "spy-qqq", "spy-cash"])
def test_turnover_counts_the_cash_leg(rows, one_way, execution):
    out = turnover_of(decisions(rows), execution)
    days = len(DATES) - FIRST
    assert out["turnover"].iloc[0] == pytest.approx(one_way / days, rel=1e-12)
    assert out["turnover_annual"].iloc[0] == pytest.approx(252 * one_way / days, rel=1e-12)
    assert out["rebalances"].iloc[0] == len(rows)


def test_a_day_before_first_is_not_counted():
    out = turnover_of(decisions({0: [1.0, 0.0], 6: [0.0, 1.0]}), "close", periods=261)
    assert out["turnover"].iloc[0] == pytest.approx(1.0 / (len(DATES) - FIRST), rel=1e-12)
    assert out["turnover_annual"].iloc[0] == pytest.approx(261.0 / (len(DATES) - FIRST), rel=1e-12)
    assert out["rebalances"].iloc[0] == 1


@pytest.mark.parametrize("execution", ["next_open", "close"])
def test_fees_count_as_the_cash_paid(execution):
    """With fees f the buy of CASH -> 100% SPY is cut to V / (1 + f) while all V of cash leaves."""
    f = 0.002
    out = turnover_of(decisions({FIRST: [1.0, 0.0]}), execution, fees=f)
    one_way = (1.0 + 1.0 / (1.0 + f)) / 2.0
    assert out["turnover"].iloc[0] == pytest.approx(one_way / (len(DATES) - FIRST), rel=1e-12)


@pytest.mark.parametrize("execution", ["next_open", "close"])
def test_each_scenario_group_equals_its_single_run(execution):
    from rl_strategy.synthetic import generate_market

    frames = generate_market(["SPY", "QQQ", "IWM"], pd.Timestamp("2020-01-01"), pd.Timestamp("2020-12-31"), 0)
    close = pd.DataFrame({t: f["Close"] for t, f in frames.items()})
    open_ = pd.DataFrame({t: f["Open"] for t, f in frames.items()})
    rng = np.random.default_rng(5)
    paths = {}
    for name in ("a", "b", "c"):
        w = pd.DataFrame(np.nan, index=close.index, columns=close.columns)
        days = rng.choice(len(close), size=40, replace=False)
        w.iloc[days] = rng.dirichlet(np.ones(4), size=40)[:, :3]  # some cash on every rebalance
        paths[name] = w
    paths["cash"] = pd.DataFrame(np.nan, index=close.index, columns=close.columns)
    stacked = pd.concat(paths, axis=1, names=["policy", "asset"])
    costs = dict(fees=0.001, slippage=0.0005, execution=execution)
    first = 10
    pf = simulate_portfolio(stacked, open_, close, **costs)
    out = trading_metrics(pf, first, trade_prices(open_, close, stacked.columns, execution), 252)
    assert out.index.tolist() == list(paths)
    assert out.loc["cash"].tolist() == [0.0, 0.0, 0]
    for name, w in paths.items():
        single = simulate_portfolio(w, open_, close, **costs)
        alone = trading_metrics(single, first, trade_prices(open_, close, w.columns, execution), 252)
        np.testing.assert_allclose(out.loc[name].to_numpy(dtype=float), alone.iloc[0].to_numpy(dtype=float),
                                   rtol=1e-12)
    assert (out.loc[["a", "b", "c"], "turnover"] > 0.05).all()


def test_trade_prices_follow_the_execution_and_must_match_the_portfolio():
    w = decisions({FIRST: [1.0, 0.0]})
    pd.testing.assert_frame_equal(trade_prices(OPEN, CLOSE, w.columns, "next_open"), OPEN)
    pd.testing.assert_frame_equal(trade_prices(None, CLOSE, w.columns, "close"), CLOSE)
    with pytest.raises(RLTraderError, match="needs open prices"):
        trade_prices(None, CLOSE, w.columns, "next_open")
    pf = simulate_portfolio(w, OPEN, CLOSE, fees=0.0, execution="close")
    with pytest.raises(RLTraderError, match="portfolio's dates and columns"):
        trading_metrics(pf, FIRST, CLOSE[["QQQ", "SPY"]])
