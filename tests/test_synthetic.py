"""The embedded synthetic market: determinism, one path per seed, valid bars, fitted statistics."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rl_strategy.errors import RLTraderError
from rl_strategy.synthetic import HORIZON, ORIGIN, SUPPORTED_TICKERS, generate_market, simulate

ALL = list(SUPPORTED_TICKERS)
_spec = importlib.util.spec_from_file_location("fit_synthetic", Path(__file__).resolve().parents[1] / "tools" / "fit_synthetic.py")
fit_synthetic = importlib.util.module_from_spec(_spec)  # a developer tool, not part of the package
_spec.loader.exec_module(fit_synthetic)
ASSETS = [t for t in ALL if t != "^VIX"]
TS = pd.Timestamp


def market(tickers=ALL, start="2005-01-01", end="2024-12-31", seed=0) -> dict[str, pd.DataFrame]:
    return generate_market(tickers, TS(start), TS(end), seed)


def test_supported_tickers():
    assert SUPPORTED_TICKERS == ("SPY", "QQQ", "IWM", "TLT", "GLD", "^VIX")


def test_same_seed_identical_different_seed_differs():
    a, b, c = market(seed=3), market(seed=3), market(seed=4)
    for t in ALL:
        pd.testing.assert_frame_equal(a[t], b[t])
        assert not np.allclose(a[t]["Close"], c[t]["Close"])
    # Independent of the cache: a fresh simulation gives the same numbers.
    pd.testing.assert_frame_equal(simulate(3)["SPY"].loc["2005":"2024"], a["SPY"])


def test_range_independence_and_consecutive_periods():
    full = market(start="2015-01-01", end="2024-12-31", seed=7)
    sub = market(start="2017-03-15", end="2018-06-29", seed=7)
    train = market(start="2015-01-01", end="2019-12-31", seed=7)
    test = market(start="2020-01-01", end="2024-12-31", seed=7)
    for t in ALL:
        pd.testing.assert_frame_equal(sub[t], full[t].loc["2017-03-15":"2018-06-29"])
        pd.testing.assert_frame_equal(pd.concat([train[t], test[t]]), full[t], check_freq=False)


def test_ticker_subset_is_the_same_market():
    full = market(seed=11)
    for subset in (["IWM"], ["^VIX", "QQQ"], ["SPY", "IWM"]):
        part = market(subset, seed=11)
        assert list(part) == subset
        for t in subset:
            pd.testing.assert_frame_equal(part[t], full[t])


@pytest.mark.parametrize("seed", [0, 1, 12345])
def test_bars_are_valid(seed):
    for t, f in market(start=ORIGIN, end=HORIZON, seed=seed).items():
        assert list(f.columns) == ["Open", "High", "Low", "Close", "Volume"]
        assert (f.dtypes == np.float64).all()
        prices = f[["Open", "High", "Low", "Close"]].to_numpy()
        assert np.isfinite(prices).all() and (prices > 0).all(), t
        assert (f["High"] >= f[["Open", "Close"]].max(axis=1)).all(), t
        assert (f["Low"] <= f[["Open", "Close"]].min(axis=1)).all(), t
        volume = f["Volume"].to_numpy()
        assert np.isfinite(volume).all()
        assert (volume == 0).all() if t == "^VIX" else (volume > 0).all(), t


def test_business_day_calendar():
    frames = market(start="2019-12-28", end="2020-03-01", seed=2)
    for f in frames.values():
        assert f.index.equals(pd.bdate_range("2019-12-28", "2020-03-01"))
        assert f.index.name == "Date" and f.index[0] == TS("2019-12-30")
    assert len(market(["SPY"], start=ORIGIN, end=HORIZON)["SPY"]) == len(pd.bdate_range(ORIGIN, HORIZON))


def test_opens_gap_from_previous_close():
    """The overnight gap carries the fitted share of the daily variance (about a third for SPY)."""
    spy = market(["SPY"], seed=5)["SPY"]
    overnight = np.log(spy["Open"] / spy["Close"].shift(1)).dropna()
    daily = np.log(spy["Close"]).diff().dropna()
    assert 0.25 < overnight.var() / daily.var() < 0.45


def test_errors_are_one_line():
    with pytest.raises(RLTraderError, match=r"no XYZ, ABC \(it has SPY, QQQ, IWM, TLT, GLD, \^VIX\)") as err:
        market(["SPY", "XYZ", "ABC"])
    assert "\n" not in str(err.value)
    with pytest.raises(RLTraderError, match="covers 1990-01-01..2040-12-31"):
        market(end="2041-06-30")
    with pytest.raises(RLTraderError, match="after end"):
        market(start="2020-01-01", end="2019-01-01")
    with pytest.raises(RLTraderError, match="seed must be >= 0"):
        market(seed=-1)
    with pytest.raises(RLTraderError, match="seed must be an integer"):
        market(seed=1.5)


def test_fast():
    start = time.perf_counter()
    simulate(987)
    assert time.perf_counter() - start < 2.0  # ~0.05 s on a laptop; generous for slow CI


@pytest.fixture(scope="module")
def real_and_synthetic(market_dir):
    real = fit_synthetic.real_statistics(market_dir)
    synth = fit_synthetic.synthetic_statistics(range(30)).mean()
    return real, synth


def test_statistics_close_to_real(real_and_synthetic):
    """Mean over seeds 0-29 of 2005-2024 vs real 2005-2024, with the README's tolerances."""
    real, syn = real_and_synthetic
    for t in ASSETS:
        assert syn[f"{t} annual volatility"] == pytest.approx(real[f"{t} annual volatility"], rel=0.2)
        assert abs(syn[f"{t} annual return"] - real[f"{t} annual return"]) < 0.04
        assert syn[f"{t} |r| autocorr lag 1"] > 0.1  # volatility clustering
        assert syn[f"{t} |r| autocorr lag 5"] > 0.1
    assert syn["SPY max drawdown"] < -0.25
    assert syn["corr SPY/TLT"] < -0.1  # bonds hedged equities in 2005-2024
    pairs = [f"{a}/{b}" for i, a in enumerate(ASSETS) for b in ASSETS[i + 1:]]
    for pair in pairs:
        assert abs(syn[f"corr {pair}"] - real[f"corr {pair}"]) < 0.1
    assert syn["VIX mean"] == pytest.approx(real["VIX mean"], rel=0.2)
    assert syn["corr VIX change/SPY"] < -0.5


def test_vix_tracks_volatility():
    """Log VIX rises with SPY's realised volatility (real 2005-2024: correlation 0.85)."""
    for seed in range(3):
        m = market(["SPY", "^VIX"], seed=seed)
        realised = np.log(np.log(m["SPY"]["Close"]).diff().rolling(20).std())
        assert np.log(m["^VIX"]["Close"]).corr(realised) > 0.5


def test_committed_params_are_the_fit(market_dir):
    """synthetic_params.py is exactly what the fit script produces from the real data."""
    from rl_strategy.synthetic_params import PARAMS

    fitted, committed = _leaves(fit_synthetic.fit(market_dir, PARAMS["assets"])), _leaves(PARAMS)
    assert fitted.keys() == committed.keys()
    for key, value in committed.items():
        assert fitted[key] == (pytest.approx(value, rel=1e-4, abs=1e-9) if isinstance(value, float) else value), key


def _leaves(obj, prefix: str = "") -> dict:
    """Nested dicts/lists flattened to {path: value}, for an approximate comparison."""
    if isinstance(obj, dict):
        return {k: v for key, item in obj.items() for k, v in _leaves(item, f"{prefix}/{key}").items()}
    if isinstance(obj, list | tuple):
        return {k: v for i, item in enumerate(obj) for k, v in _leaves(item, f"{prefix}/{i}").items()}
    return {prefix: obj}


def test_asset_list_is_a_parameter(market_dir):
    """Fitting fewer assets drops them without changing the others' paths (own random streams)."""
    narrow = simulate(0, fit_synthetic.fit(market_dir, ["SPY", "QQQ", "IWM"]))
    assert list(narrow) == ["SPY", "QQQ", "IWM", "^VIX"]
    full = simulate(0)
    for t in narrow:
        pd.testing.assert_frame_equal(narrow[t], full[t])
