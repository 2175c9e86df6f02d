"""The data layer: each source, each validation error, fingerprints, forward-fill, synthetic market."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rl_strategy.data import load_market, load_panel_cache, save_panel_cache
from rl_strategy.errors import RLTraderError
from rl_strategy.fit_synthetic import describe
from rl_strategy.synthetic import generate_market


def test_csv_real_period(market_dir):
    d = load_market(["SPY", "QQQ", "IWM"], "2015-01-01", "2019-12-31", source="csv", csv_dir=market_dir)
    assert len(d.panel) == 1258 and d.history_rows() == 0
    assert d.panel.index[0] == pd.Timestamp("2015-01-02") and d.panel.index[-1] == pd.Timestamp("2019-12-31")
    raw = pd.read_csv(market_dir / "QQQ.csv", index_col=0, parse_dates=True)
    assert d.close.loc["2017-06-30", "QQQ"] == raw.loc["2017-06-30", "Close"]
    assert d.filled == {"SPY": 0, "QQQ": 0, "IWM": 0}
    h = load_market(["SPY"], "2015-01-01", "2019-12-31", source="csv", csv_dir=market_dir, history_days=60)
    assert h.history_rows() == 60 and h.period_start == pd.Timestamp("2015-01-02")


def _write(path, dates, close, header="flat", ticker="AAA"):
    frame = pd.DataFrame({"Close": close, "High": np.array(close) * 1.01, "Low": np.array(close) * 0.99,
                          "Open": close, "Volume": 1000.0}, index=pd.DatetimeIndex(dates, name="Date"))
    if header == "flat":
        frame.to_csv(path)
    else:  # yfinance multi-ticker export: Price / Ticker / Date header rows
        frame.columns = pd.MultiIndex.from_product([frame.columns, [ticker]], names=["Price", "Ticker"])
        frame.to_csv(path)


def test_csv_two_row_header_and_forward_fill_without_backfill(tmp_path):
    days = pd.bdate_range("2021-01-04", periods=6)
    _write(tmp_path / "AAA.csv", days, [10, 11, 12, 13, 14, 15], header="multi", ticker="AAA")
    # BBB starts a day later (no back-fill) and misses one day in the middle (forward-filled)
    _write(tmp_path / "BBB.csv", days[1:].delete(2), [20, 21, 23, 24])
    assert pd.read_csv(tmp_path / "AAA.csv", header=None).iloc[0, 0] == "Price"
    d = load_market(["AAA", "BBB"], "2021-01-01", "2021-01-31", source="csv", csv_dir=tmp_path)
    assert d.panel.index[0] == days[1]  # the common span starts at BBB's first day
    assert d.close["BBB"].tolist() == [20, 21, 21, 23, 24]
    assert d.close["AAA"].tolist() == [11, 12, 13, 14, 15]
    assert d.filled == {"AAA": 0, "BBB": 1}


@pytest.mark.parametrize("case,match", [
    ("missing", "no CSV for ZZZ"),
    ("nonpositive", "non-positive or missing price on 2021-01-06"),
    ("nan", "non-positive or missing price on 2021-01-06"),
    ("duplicate", "duplicated date 2021-01-05"),
    ("unsorted", "not sorted"),
    ("no_overlap", "calendars do not overlap"),
    ("empty_range", "no data between"),
    ("too_short", "at least 5 are needed"),
    ("reversed", "is after end"),
])
def test_validation_errors(tmp_path, case, match):
    days = pd.bdate_range("2021-01-04", periods=6)
    close = [10.0, 11, 12, 13, 14, 15]
    tickers, start, end, min_days = ["AAA"], "2021-01-01", "2021-01-31", 2
    if case == "missing":
        tickers = ["AAA", "ZZZ"]
    elif case == "nonpositive":
        close[2] = 0.0
    elif case == "nan":
        close[2] = np.nan
    elif case == "duplicate":
        days = days[:2].append(days[1:5])
    elif case == "unsorted":
        days = days[[0, 2, 1, 3, 4, 5]]
    elif case == "no_overlap":
        _write(tmp_path / "BBB.csv", pd.bdate_range("2022-01-03", periods=3), [1.0, 2, 3])
        tickers, end = ["AAA", "BBB"], "2022-12-31"
    elif case == "empty_range":
        start, end = "2023-01-01", "2023-02-01"
    elif case == "too_short":
        start, min_days = "2021-01-08", 5
    elif case == "reversed":
        start, end = "2021-02-01", "2021-01-01"
    _write(tmp_path / "AAA.csv", days, close)
    with pytest.raises(RLTraderError, match=match):
        load_market(tickers, start, end, source="csv", csv_dir=tmp_path, min_days=min_days)


def test_fingerprint_stable_and_sensitive(tmp_path):
    days = pd.bdate_range("2021-01-04", periods=6)
    _write(tmp_path / "AAA.csv", days, [10.0, 11, 12, 13, 14, 15])
    a = load_market(["AAA"], "2021-01-01", "2021-01-31", source="csv", csv_dir=tmp_path)
    b = load_market(["AAA"], "2021-01-01", "2021-01-31", source="csv", csv_dir=tmp_path)
    assert a.fingerprint == b.fingerprint and len(a.fingerprint) == 64
    _write(tmp_path / "AAA.csv", days, [10.0, 11, 12, 13, 14, 15.0001])
    c = load_market(["AAA"], "2021-01-01", "2021-01-31", source="csv", csv_dir=tmp_path)
    assert c.fingerprint != a.fingerprint


def test_panel_cache_roundtrip_and_tamper(tmp_path, market_dir):
    d = load_market(["SPY", "IWM"], "2019-01-01", "2019-12-31", source="csv", csv_dir=market_dir, history_days=10)
    path = save_panel_cache(d, tmp_path / "panel.pt")
    e = load_panel_cache(path, tickers=["SPY", "IWM"])
    assert e.fingerprint == d.fingerprint and e.period_start == d.period_start and e.panel.equals(d.panel)
    with pytest.raises(RLTraderError, match="holds SPY,IWM"):
        load_panel_cache(path, tickers=["SPY", "QQQ"])
    import torch

    raw = torch.load(path, weights_only=True)
    raw["values"][5, 3] *= 1.01
    torch.save(raw, tmp_path / "bad.pt")
    with pytest.raises(RLTraderError, match="fingerprint"):
        load_panel_cache(tmp_path / "bad.pt")


def test_yahoo_empty_download_names_tickers_and_cache_serves_offline(tmp_path, monkeypatch):
    import yfinance as yf

    monkeypatch.setattr(yf, "download", lambda *a, **k: pd.DataFrame())
    with pytest.raises(RLTraderError, match="no data for SPY, QQQ"):
        load_market(["SPY", "QQQ"], "2021-01-01", "2021-01-29", source="yahoo", cache_dir=tmp_path)

    days = pd.bdate_range("2021-01-04", "2021-01-29")
    frame = pd.DataFrame({f: np.linspace(100, 110, len(days)) for f in ("Open", "High", "Low", "Close")},
                         index=days).assign(Volume=1e6)
    frame.columns = pd.MultiIndex.from_product([["SPY"], frame.columns])
    monkeypatch.setattr(yf, "download", lambda *a, **k: frame)
    a = load_market(["SPY"], "2021-01-04", "2021-01-29", source="yahoo", cache_dir=tmp_path)
    assert (tmp_path / "SPY.parquet").is_file()

    def offline(*a, **k):
        raise ConnectionError("offline")

    monkeypatch.setattr(yf, "download", offline)
    b = load_market(["SPY"], "2021-01-04", "2021-01-29", source="yahoo", cache_dir=tmp_path)
    assert a.fingerprint == b.fingerprint
    with pytest.raises(RLTraderError, match="yahoo download failed for QQQ: offline"):
        load_market(["QQQ"], "2021-01-04", "2021-01-29", source="yahoo", cache_dir=tmp_path)


def test_synthetic_deterministic_and_range_independent():
    a = generate_market(["SPY", "QQQ", "IWM"], pd.Timestamp("2015-01-01"), pd.Timestamp("2024-12-31"), seed=0)
    b = generate_market(["IWM"], pd.Timestamp("2020-01-01"), pd.Timestamp("2020-12-31"), seed=0)
    pd.testing.assert_frame_equal(a["IWM"].loc["2020-01-01":"2020-12-31"], b["IWM"])
    c = generate_market(["SPY"], pd.Timestamp("2015-01-01"), pd.Timestamp("2024-12-31"), seed=1)
    assert not np.allclose(a["SPY"]["Close"], c["SPY"]["Close"])
    spy = a["SPY"]
    assert (spy["High"] >= spy[["Open", "Close"]].max(axis=1)).all()
    assert (spy["Low"] <= spy[["Open", "Close"]].min(axis=1)).all() and (spy["Low"] > 0).all()
    assert spy.index.equals(pd.bdate_range("2015-01-01", "2024-12-31"))
    with pytest.raises(RLTraderError, match="no TLT"):
        generate_market(["TLT"], pd.Timestamp("2015-01-01"), pd.Timestamp("2016-01-01"), seed=0)
    d = load_market(["SPY", "QQQ", "IWM"], "2015-01-01", "2019-12-31", source="synthetic", seed=0)
    assert d.fingerprint == load_market(["SPY", "QQQ", "IWM"], "2015-01-01", "2019-12-31", source="synthetic",
                                        seed=0).fingerprint


def test_synthetic_statistics_close_to_real(market_dir):
    """Fitted statistics, averaged over 10 seeds of 2005-2024, within the README's tolerances."""
    frames = {t: pd.read_csv(market_dir / f"{t}.csv", index_col=0, parse_dates=True).loc["2005":"2024"]
              for t in ("SPY", "QQQ", "IWM", "^VIX")}
    idx = frames["SPY"].index.intersection(frames["QQQ"].index).intersection(frames["IWM"].index)
    idx = idx.intersection(frames["^VIX"].index)
    real = describe(pd.DataFrame({t: frames[t].loc[idx, "Close"] for t in ("SPY", "QQQ", "IWM")}),
                    frames["^VIX"].loc[idx, "Close"])
    rows = []
    for seed in range(10):
        m = generate_market(["SPY", "QQQ", "IWM", "^VIX"], pd.Timestamp("2005-01-01"), pd.Timestamp("2024-12-31"), seed)
        rows.append(describe(pd.DataFrame({t: m[t]["Close"] for t in ("SPY", "QQQ", "IWM")}), m["^VIX"]["Close"]))
    syn = pd.DataFrame(rows).mean()
    for t in ("SPY", "QQQ", "IWM"):
        assert syn[f"{t} annual volatility"] == pytest.approx(real[f"{t} annual volatility"], rel=0.1)
        assert abs(syn[f"{t} annual return"] - real[f"{t} annual return"]) < 0.03
        assert syn[f"{t} max drawdown"] < -0.3
        assert syn[f"{t} |r| autocorr lag 1"] > 0.1  # volatility clustering
    for pair in ("SPY/QQQ", "SPY/IWM", "QQQ/IWM"):
        assert abs(syn[f"corr {pair}"] - real[f"corr {pair}"]) < 0.05
    assert syn["VIX mean"] == pytest.approx(real["VIX mean"], rel=0.15)
    assert syn["corr VIX change/SPY"] < -0.25
