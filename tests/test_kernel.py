"""The numba reference kernel against vectorbt (through `simulate_portfolio`) and against a hand
computation of the recurrence in docs/cost-accounting.md; the 252-day annualisation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rl_strategy.errors import RLTraderError
from rl_strategy.kernel import simulate_weights, simulate_weights_nb
from rl_strategy.portfolio import simulate_portfolio

TICKERS = ["SPY", "QQQ", "IWM"]
N_SCEN = 16
PARITY = 1e-12  # max relative difference, kernel equity vs pf.value()


@pytest.fixture(scope="module")
def prices(source) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(open, close) of SPY/QQQ/IWM on their common dates 2015-01-01..2024-12-31: the synthetic
    market, and the real CSVs read directly with pandas (not through the data layer)."""
    if source["source"] == "synthetic":
        from rl_strategy.synthetic import generate_market

        frames = generate_market(TICKERS, pd.Timestamp("2015-01-01"), pd.Timestamp("2024-12-31"), 0)
    else:
        frames = {t: pd.read_csv(Path(source["csv_dir"]) / f"{t}.csv", index_col="Date", parse_dates=True)
                  for t in TICKERS}
    dates = frames["SPY"].index
    for frame in frames.values():
        dates = dates.intersection(frame.index)
    dates = dates[(dates >= "2015-01-01") & (dates <= "2024-12-31")]
    open_ = pd.DataFrame({t: frames[t].loc[dates, "Open"] for t in TICKERS})
    close = pd.DataFrame({t: frames[t].loc[dates, "Close"] for t in TICKERS})
    assert len(dates) > 2500
    return open_, close


def random_paths(rng: np.random.Generator, n_scen: int, n_rows: int, n_assets: int = 3) -> np.ndarray:
    """Decision paths mixing full rebalances, partial (some cash) rows, one-asset NaN rows,
    all-cash / all-in-one rows, single HOLD rows and long HOLD stretches."""
    w = np.full((n_scen, n_rows, n_assets), np.nan)
    for s in range(n_scen):
        t = 0
        while t < n_rows:
            kind = rng.choice(7, p=[0.08, 0.25, 0.2, 0.12, 0.05, 0.05, 0.25])
            if kind == 0:  # long HOLD stretch
                t += int(rng.integers(20, 150))
                continue
            if kind == 1:
                row = rng.dirichlet(np.ones(n_assets))  # sums to 1
            elif kind == 2:
                row = rng.dirichlet(np.ones(n_assets + 1))[:n_assets]  # some cash
            elif kind == 3:
                row = rng.dirichlet(np.ones(n_assets + 1))[:n_assets]
                row[rng.integers(n_assets)] = np.nan  # leave one asset alone
            elif kind == 4:
                row = np.zeros(n_assets)  # all cash
            elif kind == 5:
                row = np.eye(n_assets)[rng.integers(n_assets)]  # all in one asset
            else:
                row = np.full(n_assets, np.nan)  # HOLD
            w[s, t] = row
            t += 1
    return w


def as_frame(w: np.ndarray, close: pd.DataFrame) -> pd.DataFrame:
    """(S, T, n) -> dates x (scenario, asset) columns, one block per scenario."""
    cols = pd.MultiIndex.from_product([range(w.shape[0]), close.columns], names=["scenario", "asset"])
    return pd.DataFrame(w.transpose(1, 0, 2).reshape(w.shape[1], -1), index=close.index, columns=cols)


def max_rel_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a / b - 1.0)))


@pytest.mark.parametrize("execution", ["next_open", "close"])
@pytest.mark.parametrize(("fees", "slippage"), [(0.001, 0.0005), (0.0, 0.0)])
@pytest.mark.parametrize("init_cash", [1.0, 1e6])
def test_kernel_equals_vectorbt_on_real_prices(prices, execution, fees, slippage, init_cash):
    open_, close = prices
    w = random_paths(np.random.default_rng(7), N_SCEN, len(close))
    kernel = simulate_weights(open_.to_numpy(), close.to_numpy(), w, fees=fees, slippage=slippage,
                              execution=execution, init_cash=init_cash)
    pf = simulate_portfolio(as_frame(w, close), open_, close, fees=fees, slippage=slippage,
                            execution=execution, init_cash=init_cash)
    value = pf.value()
    assert value.shape == (len(close), N_SCEN)  # one cash-sharing group per scenario
    assert max_rel_diff(kernel, value.to_numpy().T) <= PARITY
    if fees > 0:  # the costs are really there: ~1e-3 of turnover
        free = simulate_weights(open_.to_numpy(), close.to_numpy(), w, fees=0.0, execution=execution,
                                init_cash=init_cash)
        assert np.all(kernel[:, -1] < free[:, -1])


def test_min_size_rejections_are_mirrored(prices):
    """With 1e-4 of cash, vectorbt's 1e-8-unit minimum rejects many orders; the kernel too."""
    open_, close = prices
    w = random_paths(np.random.default_rng(11), N_SCEN, len(close))
    kernel = simulate_weights(open_.to_numpy(), close.to_numpy(), w, fees=0.001, slippage=0.0005,
                              init_cash=1e-4)
    pf = simulate_portfolio(as_frame(w, close), open_, close, fees=0.001, slippage=0.0005, init_cash=1e-4)
    assert max_rel_diff(kernel, pf.value().to_numpy().T) <= PARITY
    big = simulate_weights(open_.to_numpy(), close.to_numpy(), w, fees=0.001, slippage=0.0005, init_cash=1e6)
    assert max_rel_diff(kernel / 1e-4, big / 1e6) > 1e-9  # rejections changed the path


def test_two_days_by_hand():
    """Two assets, two trading days, next-open fills, fees 1% and slippage 1%, init cash 100.

    Day 0: decide [0.6, 0.4].  Day 1: fill at the open (10, 20), mark at the close (11, 19),
    decide [0.25, 0.5].  Day 2: fill at the open (12, 18), mark at the close (12.5, 17).
    """
    buy, sell = 1.01 * 1.01, 0.99 * 0.99  # cost per unit of value bought, cash per unit sold
    # Day 1 open: V = 100, d = (60, 40). Buys in ascending d: B (40) first, A gets the rest.
    c = 100.0 - 40.0 * buy  # 59.196
    h_b = 40.0
    assert 60.0 * buy > c  # A's buy is clipped by the cash left
    h_a = c / buy  # 58.0296...
    c = 0.0
    h_a, h_b = h_a * 11 / 10, h_b * 19 / 20  # drift open -> close
    v1 = c + h_a + h_b
    # Day 2 open: drift close -> open, then sell A down to 0.25 V, buy B up to 0.5 V.
    h_a, h_b = h_a * 12 / 11, h_b * 18 / 19
    v = c + h_a + h_b
    d_a, d_b = 0.25 * v - h_a, 0.5 * v - h_b
    assert d_a < 0 < d_b
    c += -d_a * sell
    h_a += d_a
    assert d_b * buy <= c  # this buy fills in full
    c -= d_b * buy
    h_b += d_b
    v2 = c + h_a * 12.5 / 12 + h_b * 17 / 18
    expected = np.array([100.0, v1, v2])
    np.testing.assert_allclose([v1, v2], [101.83256543476129, 102.60332856582687], rtol=1e-12)

    dates = pd.date_range("2024-01-02", periods=3, freq="B")
    open_ = pd.DataFrame([[10.0, 20.0], [10.0, 20.0], [12.0, 18.0]], index=dates, columns=["A", "B"])
    close = pd.DataFrame([[10.0, 20.0], [11.0, 19.0], [12.5, 17.0]], index=dates, columns=["A", "B"])
    w = pd.DataFrame([[0.6, 0.4], [0.25, 0.5], [np.nan, np.nan]], index=dates, columns=["A", "B"])
    kernel = simulate_weights(open_.to_numpy(), close.to_numpy(), w.to_numpy(), fees=0.01, slippage=0.01,
                              init_cash=100.0)
    np.testing.assert_allclose(kernel, expected, rtol=1e-12, atol=0)
    pf = simulate_portfolio(w, open_, close, fees=0.01, slippage=0.01, init_cash=100.0)
    np.testing.assert_allclose(pf.value().to_numpy(), expected, rtol=1e-12, atol=0)
    np.testing.assert_allclose(pf.assets()["A"].iloc[1], 59.196 / buy / 10, rtol=1e-12)  # clipped fill


def test_hold_rows_place_no_order(prices):
    """Vectorbt's orders sit exactly on the rows that trade (one day later for next-open)."""
    open_, close = prices
    rng = np.random.default_rng(3)
    w = np.full((len(close), 3), np.nan)
    trade_rows = np.sort(rng.choice(len(close) - 1, 60, replace=False))
    w[trade_rows] = rng.dirichlet(np.ones(4), size=60)[:, :3]  # every asset moves on a trade row
    frame = pd.DataFrame(w, index=close.index, columns=close.columns)
    for execution, lag in (("close", 0), ("next_open", 1)):
        pf = simulate_portfolio(frame, open_, close, execution=execution)
        orders = pf.orders.records
        assert len(orders) == 3 * len(trade_rows)
        np.testing.assert_array_equal(np.unique(orders["idx"]), trade_rows + lag)
        kernel = simulate_weights(open_.to_numpy(), close.to_numpy(), w, execution=execution, init_cash=1e6)
        assert max_rel_diff(kernel, pf.value().to_numpy()) <= PARITY


def test_next_open_is_close_execution_of_shifted_weights(prices):
    open_, close = prices
    w = random_paths(np.random.default_rng(5), 4, len(close))
    shifted = np.concatenate([np.full((4, 1, 3), np.nan), w[:, :-1]], axis=1)
    helper = simulate_weights(open_.to_numpy(), close.to_numpy(), w, fees=0.001, slippage=0.0005)
    by_hand = simulate_weights_nb(open_.to_numpy(), close.to_numpy(), shifted, 0.001, 0.0005, 1.0)
    np.testing.assert_array_equal(helper, by_hand)
    # No look-ahead: a different decision on day t changes nothing up to day t's close.
    t = len(close) // 2
    other = w.copy()
    other[:, t] = [0.0, 0.0, 1.0]
    changed = simulate_weights(open_.to_numpy(), close.to_numpy(), other, fees=0.001, slippage=0.0005)
    np.testing.assert_array_equal(changed[:, : t + 1], helper[:, : t + 1])
    assert np.all(changed[:, t + 1] != helper[:, t + 1])
    # And the vectorbt helper shifts the same way.
    import vectorbt as vbt

    frame = pd.DataFrame(w[0], index=close.index, columns=close.columns)
    pf = simulate_portfolio(frame, open_, close, fees=0.001, slippage=0.0005, init_cash=1.0)
    ref = vbt.Portfolio.from_orders(close, size=frame.shift(1), price=open_, size_type="targetpercent",
                                    group_by=True, cash_sharing=True, call_seq="auto", fees=0.001,
                                    slippage=0.0005, init_cash=1.0, freq="1D")
    np.testing.assert_array_equal(pf.value().to_numpy(), ref.value().to_numpy())


def test_sharpe_is_annualised_over_252_days_without_touching_vbt_settings(prices):
    import quantstats as qs
    import vectorbt as vbt

    from rl_strategy.portfolio import YEAR_FREQ

    open_, close = prices
    w = random_paths(np.random.default_rng(9), N_SCEN, len(close))
    before = vbt.settings.returns["year_freq"]
    pf = simulate_portfolio(as_frame(w, close), open_, close, fees=0.001, slippage=0.0005)
    assert vbt.settings.returns["year_freq"] == before  # a researcher's session keeps its settings
    sharpe = pf.sharpe_ratio(year_freq=YEAR_FREQ)
    returns = pf.returns()
    assert len(sharpe) == N_SCEN
    for scen in sharpe.index:
        assert sharpe[scen] == pytest.approx(qs.stats.sharpe(returns[scen], periods=252), rel=1e-12, abs=0)
    assert sharpe.iloc[0] / pf.sharpe_ratio(year_freq="365 days").iloc[0] == pytest.approx(np.sqrt(252 / 365))


def test_invalid_inputs_are_one_line_errors(prices):
    open_, close = prices
    w = pd.DataFrame(1 / 3, index=close.index, columns=close.columns)
    bad = [
        (dict(weights=w, execution="tomorrow"), "execution"),
        (dict(weights=w.iloc[1:]), "same dates"),
        (dict(weights=w.rename(columns={"IWM": "DIA"})), "DIA"),
        (dict(weights=w * -0.1), r"\[0, 1\]"),
        (dict(weights=w * 1.01), "row sums"),
        (dict(weights=w, open_=None), "open prices"),
    ]
    for kwargs, match in bad:
        args = dict(weights=w, open_=open_, close=close) | kwargs
        with pytest.raises(RLTraderError, match=match) as err:
            simulate_portfolio(args.pop("weights"), args.pop("open_"), args.pop("close"), **args)
        assert "\n" not in str(err.value)
    mixed = as_frame(np.full((2, len(close), 3), 0.2), close).iloc[:, [0, 3, 1, 4, 2, 5]]
    with pytest.raises(RLTraderError, match="adjacent"):
        simulate_portfolio(mixed, open_, close)
    o, c = open_.to_numpy(), close.to_numpy()
    with pytest.raises(RLTraderError, match="execution"):
        simulate_weights(o, c, w.to_numpy(), execution="tomorrow")
    with pytest.raises(RLTraderError, match="match"):
        simulate_weights(o, c, w.to_numpy()[:, :2])
    with pytest.raises(RLTraderError, match="row sums"):
        simulate_weights(o, c, w.to_numpy() * 1.01)
    with pytest.raises(RLTraderError, match="positive"):
        simulate_weights(o, -c, w.to_numpy(), execution="close")
