"""The data layer: each source, each validation error, fingerprints, gap filling, history, period
selection, caches, CLI."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rl_strategy.data import FIELDS, fingerprint, load_market, load_panel_cache, save_panel_cache, select_period
from rl_strategy.errors import RLTraderError

REAL = ["SPY", "QQQ", "IWM"]
DAYS = pd.bdate_range("2021-01-04", periods=6)  # Mon 4 .. Mon 11 January 2021


def _frame(dates, close) -> pd.DataFrame:
    close = np.asarray(close, dtype=float)
    return pd.DataFrame({"Open": close, "High": close * 1.01, "Low": close * 0.99, "Close": close,
                         "Volume": 1000.0}, index=pd.DatetimeIndex(dates, name="Date"))


def _write(folder: Path, ticker: str, dates, close) -> None:
    """The flat layout: Date,Open,High,Low,Close,Volume."""
    _frame(dates, close).to_csv(folder / f"{ticker}.csv")


def _load(folder: Path, tickers=("AAA",), start="2021-01-01", end="2021-01-31", **kw):
    return load_market(list(tickers), start, end, source="csv", csv_dir=folder, **kw)


# -- csv: the real shared data -----------------------------------------------------------------------
def test_csv_real_period(market_dir):
    d = load_market(REAL, "2015-01-01", "2019-12-31", source="csv", csv_dir=market_dir)
    assert len(d.panel) == 1258 and d.history_rows() == 0
    assert d.panel.index[0] == pd.Timestamp("2015-01-02") == d.period_start
    assert d.panel.index[-1] == pd.Timestamp("2019-12-31")
    assert d.panel.index.name == "Date" and d.panel.index.tz is None and d.panel.index.is_unique
    assert d.panel.columns.tolist() == [(f, t) for f in FIELDS for t in REAL]
    assert (d.panel.dtypes == np.float64).all()
    assert d.close.loc["2017-06-30", "QQQ"] == 130.3855743408203  # QQQ.csv line 4610
    assert d.open.loc["2015-01-02", "SPY"] == 172.36147167299092  # SPY.csv line 5524
    assert d.volume.loc["2019-12-31", "SPY"] == 57077300
    assert d.filled == {"SPY": 0, "QQQ": 0, "IWM": 0} and d.source == "csv"
    assert d.summary() == {"source": "csv", "tickers": REAL, "rows": 1258, "history_rows": 0, "period_rows": 1258,
                           "first_day": "2015-01-02", "period_start": "2015-01-02", "last_day": "2019-12-31",
                           "filled": d.filled, "fingerprint": d.fingerprint}


def test_csv_values_exactly_as_in_the_file(market_dir):
    """Every number of a file survives parsing bit for bit (compared with Python's float())."""
    with open(market_dir / "IWM.csv", newline="") as fh:
        rows = [r for r in csv.reader(fh)][1:]
    rows = [r for r in rows if "2015-01-01" <= r[0] <= "2019-12-31"]
    d = load_market(["IWM"], "2015-01-01", "2019-12-31", source="csv", csv_dir=market_dir)
    expected = np.array([[float(x) for x in r[1:]] for r in rows])
    assert [str(x.date()) for x in d.panel.index] == [r[0] for r in rows]
    assert np.array_equal(d.panel.to_numpy(), expected)


def test_history_days_are_past_rows_only(market_dir):
    d = load_market(REAL, "2015-01-01", "2019-12-31", source="csv", csv_dir=market_dir)
    h = load_market(REAL, "2015-01-01", "2019-12-31", source="csv", csv_dir=market_dir, history_days=60)
    assert h.history_rows() == 60 and len(h.panel) == 1258 + 60
    assert h.period_start == pd.Timestamp("2015-01-02")
    assert h.panel.index[0] == pd.Timestamp("2014-10-07")  # 60 rows before 2015-01-02 in SPY.csv
    assert (h.panel.index[:60] < h.period_start).all()
    pd.testing.assert_frame_equal(h.panel.loc[h.period_start:], d.panel)
    assert h.summary()["first_day"] == "2014-10-07" and h.summary()["period_rows"] == 1258


def test_history_days_limited_to_what_the_source_has(tmp_path):
    _write(tmp_path, "AAA", pd.bdate_range("2020-12-28", "2021-01-08").drop(pd.Timestamp("2021-01-01")),
           np.arange(10.0, 19.0))
    d = _load(tmp_path, history_days=50)
    assert d.history_rows() == 4 and d.period_start == pd.Timestamp("2021-01-04")  # 28-31 Dec only
    assert d.panel.index[0] == pd.Timestamp("2020-12-28")
    assert _load(tmp_path).history_rows() == 0


# -- csv: layouts --------------------------------------------------------------------------------
MULTI_HEADER = """Price,Close,High,Low,Open,Volume
Ticker,AAA,AAA,AAA,AAA,AAA
Date,,,,,
2021-01-04,10.0,10.5,9.5,9.8,100
2021-01-05,11.0,11.5,10.5,10.8,200
2021-01-06,12.0,12.5,11.5,11.8,300
"""


def test_csv_two_row_price_ticker_header(tmp_path):
    (tmp_path / "AAA.csv").write_text(MULTI_HEADER)
    d = _load(tmp_path)
    assert d.close["AAA"].tolist() == [10.0, 11.0, 12.0] and d.open["AAA"].tolist() == [9.8, 10.8, 11.8]
    assert d.high["AAA"].tolist() == [10.5, 11.5, 12.5] and d.low["AAA"].tolist() == [9.5, 10.5, 11.5]
    assert d.volume["AAA"].tolist() == [100, 200, 300]
    (tmp_path / "AAA.csv").write_text(MULTI_HEADER.replace("Date,,,,,\n", ""))  # without the Date row
    assert _load(tmp_path).fingerprint == d.fingerprint


def test_csv_multi_ticker_export_picks_the_files_ticker(tmp_path):
    (tmp_path / "AAA.csv").write_text(
        "Price,Close,Close,Open,Open,High,High,Low,Low\n"
        "Ticker,AAA,BBB,AAA,BBB,AAA,BBB,AAA,BBB\n"
        "Date,,,,,,,,\n"
        "2021-01-04,10,50,9,49,11,51,8,48\n"
        "2021-01-05,12,52,11,51,13,53,10,50\n")
    d = _load(tmp_path)
    assert d.close["AAA"].tolist() == [10, 12] and d.low["AAA"].tolist() == [8, 10]
    assert d.volume["AAA"].tolist() == [0, 0]  # no Volume column: filled with 0
    (tmp_path / "CCC.csv").write_text((tmp_path / "AAA.csv").read_text())
    with pytest.raises(RLTraderError, match="holds AAA, BBB, not CCC"):
        _load(tmp_path, ["CCC"])


def test_csv_column_order_timezone_offsets_and_index_without_volume(tmp_path):
    (tmp_path / "^VIX.csv").write_text(
        "Date,Close,Low,High,Open\n"
        "2021-01-04 00:00:00-05:00,26.97,21.2,29.19,23.04\n"
        "2021-01-05 00:00:00-05:00,25.34,24.8,26.91,26.57\n")
    d = _load(tmp_path, ["^VIX"])
    assert d.panel.index.tolist() == [pd.Timestamp("2021-01-04"), pd.Timestamp("2021-01-05")]
    assert d.close["^VIX"].tolist() == [26.97, 25.34] and d.open["^VIX"].tolist() == [23.04, 26.57]
    assert d.volume["^VIX"].tolist() == [0.0, 0.0]


# -- alignment: gaps filled flat at the previous close, never back-filled ----------------------------
def _write_ohlc(folder: Path, ticker: str, dates, open_, close) -> None:
    """Distinct opens, so a fill that copied a past Open would show."""
    frame = _frame(dates, close)
    frame["Open"] = np.asarray(open_, dtype=float)
    frame.to_csv(folder / f"{ticker}.csv")


def test_gap_filled_flat_without_back_fill(tmp_path):
    _write(tmp_path, "AAA", DAYS, [10, 11, 12, 13, 14, 15])
    # BBB starts a day later (must not be back-filled) and misses Thursday 7th (filled flat)
    _write_ohlc(tmp_path, "BBB", DAYS[[1, 2, 4, 5]], [19.5, 20.5, 22.5, 23.5], [20, 21, 23, 24])
    d = _load(tmp_path, ["AAA", "BBB"])
    assert d.panel.index[0] == DAYS[1]  # the panel starts at BBB's first day
    assert d.panel.index.tolist() == DAYS[1:].tolist()
    assert d.close["BBB"].tolist() == [20, 21, 21, 23, 24]  # the 7th is flat at the 6th's close
    assert d.open["BBB"].tolist() == [19.5, 20.5, 21, 22.5, 23.5]  # not the 6th's open 20.5
    assert d.high["BBB"].tolist() == [20 * 1.01, 21 * 1.01, 21, 23 * 1.01, 24 * 1.01]
    assert d.low["BBB"].tolist() == [20 * 0.99, 21 * 0.99, 21, 23 * 0.99, 24 * 0.99]
    assert d.volume["BBB"].tolist() == [1000, 1000, 0, 1000, 1000]
    assert d.close["AAA"].tolist() == [11, 12, 13, 14, 15]
    assert d.filled == {"AAA": 0, "BBB": 1}
    assert not d.panel.isna().any().any()


def test_one_missing_day_is_a_flat_bar_at_the_previous_close(tmp_path):
    _write_ohlc(tmp_path, "SPY", DAYS, [99, 100, 101, 102, 103, 104], [100, 101, 102, 103, 104, 105])
    _write_ohlc(tmp_path, "IWM", DAYS.delete(3), [49, 50, 51, 53, 54], [50, 51, 52, 54, 55])  # no 7th
    d = _load(tmp_path, ["SPY", "IWM"])
    assert d.panel.index.tolist() == DAYS.tolist() and d.filled == {"SPY": 0, "IWM": 1}
    assert d.panel.xs("IWM", axis=1, level="ticker").loc[DAYS[3]].to_dict() == {
        "Open": 52.0, "High": 52.0, "Low": 52.0, "Close": 52.0, "Volume": 0.0}
    assert d.open["IWM"].tolist() == [49, 50, 51, 52, 53, 54]


def test_a_decision_before_a_gap_fills_at_that_close(tmp_path):
    """Decided at the 6th's close, a next-open order fills at the (flat) 7th: the 6th's close,
    so there is no drift before or after the fill, and no trade at the 6th's own open."""
    from rl_strategy.env import prepare_market

    _write_ohlc(tmp_path, "SPY", DAYS, [99, 100, 101, 102, 103, 104], [100, 101, 102, 103, 104, 105])
    _write_ohlc(tmp_path, "IWM", DAYS.delete(3), [49, 50, 51, 53, 54], [50, 51, 52, 54, 55])
    d = _load(tmp_path, ["SPY", "IWM"])
    m = prepare_market(d.close, d.open, "next_open")
    t, iwm = 2, 1  # Wednesday 6th, the day before IWM's gap
    assert m.pre_drift[t, iwm] == 1.0 and m.post_drift[t, iwm] == 1.0
    assert m.pre_drift[t + 1, iwm] == 53 / 52  # the 8th's real open over the flat 7th's close
    assert m.pre_drift[t, 0] == 102 / 102 and m.post_drift[t, 0] == 103 / 102  # SPY traded


def test_first_row_is_flat_at_the_last_earlier_close(tmp_path):
    """AAA has no bar on BBB's first day: it is flat at AAA's previous (past) close, counted as filled."""
    _write_ohlc(tmp_path, "AAA", DAYS[[0, 2, 3]], [9, 11.5, 12.5], [10, 12, 13])
    _write(tmp_path, "BBB", DAYS[1:4], [21, 22, 23])
    d = _load(tmp_path, ["BBB", "AAA"])
    assert d.panel.index.tolist() == DAYS[1:4].tolist()
    assert d.close.columns.tolist() == ["BBB", "AAA"]  # the requested order
    assert d.close["AAA"].tolist() == [10, 12, 13] and d.filled == {"BBB": 0, "AAA": 1}
    assert d.open["AAA"].tolist() == [10, 11.5, 12.5]  # not the 4th's open 9
    assert d.high["AAA"].tolist() == [10, 12 * 1.01, 13 * 1.01] and d.low["AAA"].tolist() == [10, 12 * 0.99, 13 * 0.99]
    assert d.volume["AAA"].tolist() == [0, 1000, 1000]


def test_union_calendar_inside_the_common_span(tmp_path):
    _write(tmp_path, "AAA", DAYS[[0, 1, 3, 5]], [10, 11, 13, 15])  # ends on the 11th
    _write(tmp_path, "BBB", DAYS[[1, 2, 3, 4]], [21, 22, 23, 24])  # 5th..8th
    d = _load(tmp_path, ["AAA", "BBB"])
    assert d.panel.index.tolist() == DAYS[1:5].tolist()  # latest first day .. earliest last day
    assert d.close["AAA"].tolist() == [11, 11, 13, 13] and d.filled == {"AAA": 2, "BBB": 0}
    assert d.open["AAA"].tolist() == [11, 11, 13, 13] and d.high["AAA"].tolist() == [11 * 1.01, 11, 13 * 1.01, 13]
    assert d.volume["AAA"].tolist() == [1000, 0, 1000, 0]


# -- validation ----------------------------------------------------------------------------------
def _case(tmp_path: Path, case: str) -> dict:
    """Write the fixture of one broken input; return load_market's arguments."""
    close = [10.0, 11, 12, 13, 14, 15]
    days = DAYS
    kw = {"tickers": ["AAA"], "start": "2021-01-01", "end": "2021-01-31", "min_days": 2}
    if case == "missing":
        kw["tickers"] = ["AAA", "ZZZ", "YYY"]
    elif case == "no_tickers":
        kw["tickers"] = [" ", ""]
    elif case == "zero":
        close[2] = 0.0
    elif case == "negative":
        close[3] = -1.0
    elif case == "nan":
        close[2] = np.nan
    elif case == "inf":
        close[4] = np.inf
    elif case == "duplicate":
        days = days[[0, 1, 1, 2, 3, 4]]
    elif case == "unsorted":
        days = days[[0, 2, 1, 3, 4, 5]]
    elif case == "no_overlap":
        _write(tmp_path, "BBB", pd.bdate_range("2022-01-03", periods=3), [1.0, 2, 3])
        kw.update(tickers=["AAA", "BBB"], end="2022-12-31")
    elif case == "empty_range":
        kw.update(start="2023-01-01", end="2023-02-01")
    elif case == "too_short":
        kw.update(start="2021-01-08", min_days=5)
    elif case == "reversed":
        kw.update(start="2021-02-01", end="2021-01-01")
    elif case == "bad_date":
        kw["start"] = "2021-13-45"
    _write(tmp_path, "AAA", days, close)
    return kw


@pytest.mark.parametrize("case,message", [
    ("missing", r"^no CSV for ZZZ, YYY in .* \(expected <TICKER>\.csv\)$"),
    ("no_tickers", r"^no tickers given$"),
    ("zero", r"^AAA: non-positive or missing price on 2021-01-06 \(Open = 0\.0\)$"),
    ("negative", r"^AAA: non-positive or missing price on 2021-01-07 \(Open = -1\.0\)$"),
    ("nan", r"^AAA: non-positive or missing price on 2021-01-06 \(Open = nan\)$"),
    ("inf", r"^AAA: non-positive or missing price on 2021-01-08 \(Open = inf\)$"),
    ("duplicate", r"^AAA: duplicated date 2021-01-05$"),
    ("unsorted", r"^AAA: dates are not sorted \(2021-01-05 comes after 2021-01-06\)$"),
    ("no_overlap", r"^the tickers' calendars do not overlap \(AAA 2021-01-04..2021-01-11, BBB 2022-01-03..2022-01-05\)$"),
    ("empty_range", r"^AAA has no data between 2023-01-01 and 2023-02-01$"),
    ("too_short", r"^2021-01-08..2021-01-31 holds 2 common trading day\(s\) of AAA: shorter than the feature "
                  r"warm-up / minimum of 5 days$"),
    ("reversed", r"^start 2021-02-01 is after end 2021-01-01$"),
    ("bad_date", r"^bad start date '2021-13-45' .*; use YYYY-MM-DD$"),
])
def test_validation_errors_are_one_precise_line(tmp_path, case, message):
    kw = _case(tmp_path, case)
    with pytest.raises(RLTraderError, match=message) as err:
        load_market(kw.pop("tickers"), kw.pop("start"), kw.pop("end"), source="csv", csv_dir=tmp_path, **kw)
    assert "\n" not in str(err.value)


def test_a_bad_price_outside_the_requested_rows_is_not_an_error(tmp_path):
    _write(tmp_path, "AAA", pd.bdate_range("2020-12-01", periods=30), [0.0, *np.arange(11.0, 40.0)])
    assert len(_load(tmp_path).panel) == 7  # 1 and 4..11 January
    with pytest.raises(RLTraderError, match="price on 2020-12-01"):
        _load(tmp_path, history_days=30)


@pytest.mark.parametrize("text,message", [
    ("Date,Open,High,Low,Volume\n2021-01-04,1,1,1,1\n", "no header row naming a Close column"),
    ("Date,Open,High,Close,Volume\n2021-01-04,1,1,1,1\n", "missing column\\(s\\) Low for AAA"),
    ("Date,Open,High,Low,Close\n2021-01-04,1,1,1,1\n04/01/2021,1,1,1,1\n", "unreadable date '04/01/2021' on line 3"),
    ("hello\nworld\n", "no rows starting with a YYYY-MM-DD date"),
    ("", "cannot read CSV"),
])
def test_malformed_csv_files(tmp_path, text, message):
    (tmp_path / "AAA.csv").write_text(text)
    with pytest.raises(RLTraderError, match=message):
        _load(tmp_path)


def test_source_arguments(tmp_path):
    with pytest.raises(RLTraderError, match="unknown data source 'excel'"):
        load_market(["SPY"], "2021-01-01", "2021-02-01", source="excel")
    with pytest.raises(RLTraderError, match="csv source needs --csv-dir"):
        load_market(["SPY"], "2021-01-01", "2021-02-01", source="csv")
    with pytest.raises(RLTraderError, match="CSV folder not found"):
        load_market(["SPY"], "2021-01-01", "2021-02-01", source="csv", csv_dir=tmp_path / "nope")
    with pytest.raises(RLTraderError, match="ticker\\(s\\) given twice: SPY"):
        load_market(["SPY", "QQQ", "SPY"], "2021-01-01", "2021-02-01")


# -- fingerprint ---------------------------------------------------------------------------------
def test_fingerprint_stable_and_sensitive(tmp_path):
    _write(tmp_path, "AAA", DAYS, [10.0, 11, 12, 13, 14, 15])
    _write(tmp_path, "BBB", DAYS, [20.0, 21, 22, 23, 24, 25])
    a = _load(tmp_path, ["AAA", "BBB"])
    # Pinned: the fingerprint is recorded in checkpoints, so it must not depend on run or machine.
    assert a.fingerprint == "233bd1fc80101b8cc08c826149ecd17f23c5198d2c05fac67c8ed6dc04e175ac"
    assert _load(tmp_path, ["AAA", "BBB"]).fingerprint == a.fingerprint
    assert _load(tmp_path, ["BBB", "AAA"]).fingerprint != a.fingerprint
    assert _load(tmp_path, ["AAA", "BBB"], end="2021-01-08").fingerprint != a.fingerprint
    _write(tmp_path, "BBB", DAYS, [20.0, 21, 22, 23, 24, 25.000001])
    assert _load(tmp_path, ["AAA", "BBB"]).fingerprint != a.fingerprint


# -- synthetic -----------------------------------------------------------------------------------
def test_synthetic_source_is_deterministic():
    a = load_market(REAL, "2015-01-01", "2019-12-31", seed=0)
    assert a.source == "synthetic" and a.tickers == tuple(REAL)
    assert a.panel.index[0] == pd.Timestamp("2015-01-01") and a.panel.index[-1] == pd.Timestamp("2019-12-31")
    assert a.fingerprint == load_market(REAL, "2015-01-01", "2019-12-31", seed=0).fingerprint
    assert a.fingerprint != load_market(REAL, "2015-01-01", "2019-12-31", seed=1).fingerprint
    h = load_market(REAL, "2015-01-01", "2019-12-31", seed=0, history_days=60)
    assert h.history_rows() == 60
    pd.testing.assert_frame_equal(h.panel.loc["2015-01-01":], a.panel)
    with pytest.raises(RLTraderError, match="NOPE"):  # the generator's own one-line error
        load_market(["SPY", "NOPE"], "2015-01-01", "2019-12-31")


# -- yahoo (yf.download monkeypatched: no network in tests) -------------------------------------------
def _yahoo_frame(tickers, days, nan_for=()) -> pd.DataFrame:
    """What yf.download(group_by="ticker") returns: columns (ticker, field); failed tickers are NaN."""
    parts = {}
    for k, t in enumerate(tickers):
        f = _frame(days, np.linspace(100 + k, 110 + k, len(days)))
        parts[t] = f * np.nan if t in nan_for else f
    return pd.concat(parts, axis=1)


def test_yahoo_empty_download_names_the_tickers(tmp_path, monkeypatch):
    import yfinance as yf

    monkeypatch.setattr(yf, "download", lambda *a, **k: pd.DataFrame())
    with pytest.raises(RLTraderError, match=r"^yahoo returned no data for SPY, QQQ \(offline, rate-limited or "
                                            r"unknown ticker\?\)$"):
        load_market(["SPY", "QQQ"], "2021-01-01", "2021-01-29", source="yahoo", cache_dir=tmp_path)
    assert not list(tmp_path.iterdir())


def test_yahoo_all_nan_columns_name_only_the_failed_ticker(tmp_path, monkeypatch):
    import yfinance as yf

    days = pd.bdate_range("2021-01-04", "2021-01-29")
    monkeypatch.setattr(yf, "download", lambda *a, **k: _yahoo_frame(["SPY", "XXXX"], days, nan_for={"XXXX"}))
    with pytest.raises(RLTraderError, match="^yahoo returned no data for XXXX "):
        load_market(["SPY", "XXXX"], "2021-01-04", "2021-01-29", source="yahoo", cache_dir=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["SPY.parquet"]  # what did arrive is kept


def test_yahoo_download_is_cached_and_served_offline(tmp_path, monkeypatch):
    import yfinance as yf

    calls = []
    days = pd.bdate_range("2021-01-04", "2021-01-29")

    def download(tickers, **kw):
        calls.append((tickers, kw))
        return _yahoo_frame(tickers, days)

    monkeypatch.setattr(yf, "download", download)
    a = load_market(["SPY", "^VIX"], "2021-01-04", "2021-01-29", source="yahoo", cache_dir=tmp_path)
    assert calls == [(["SPY", "^VIX"], {"start": "2021-01-04", "end": "2021-01-30", "auto_adjust": True,
                                        "progress": False, "group_by": "ticker", "threads": False})]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["SPY.parquet", "_VIX.parquet"]
    assert len(a.panel) == 20 and a.source == "yahoo" and a.close["SPY"].iloc[-1] == 110.0

    def offline(*a, **k):
        raise ConnectionError("Failed to resolve 'query2.finance.yahoo.com'\nmore detail")

    monkeypatch.setattr(yf, "download", offline)
    b = load_market(["SPY", "^VIX"], "2021-01-04", "2021-01-29", source="yahoo", cache_dir=tmp_path)
    assert b.fingerprint == a.fingerprint and b.panel.equals(a.panel)
    c = load_market(["^VIX"], "2021-01-11", "2021-01-22", source="yahoo", cache_dir=tmp_path)  # a sub-range
    assert c.panel.index[0] == pd.Timestamp("2021-01-11") and len(c.panel) == 10
    with pytest.raises(RLTraderError, match=r"^yahoo download failed for QQQ: Failed to resolve "
                                            r"'query2.finance.yahoo.com'$"):
        load_market(["QQQ"], "2021-01-04", "2021-01-29", source="yahoo", cache_dir=tmp_path)
    with pytest.raises(RLTraderError, match="yahoo download failed for SPY"):  # not covered: downloads again
        load_market(["SPY"], "2021-01-04", "2021-03-31", source="yahoo", cache_dir=tmp_path)


def test_yahoo_cache_grows_over_the_union_of_ranges(tmp_path, monkeypatch):
    import yfinance as yf

    calls = []

    def download(tickers, start, end, **kw):
        calls.append((start, end))
        return _yahoo_frame(tickers, pd.bdate_range(start, pd.Timestamp(end) - pd.Timedelta(days=1)))

    monkeypatch.setattr(yf, "download", download)
    load_market(["SPY"], "2021-03-01", "2021-03-31", source="yahoo", cache_dir=tmp_path)
    load_market(["SPY"], "2021-01-04", "2021-01-29", source="yahoo", cache_dir=tmp_path)
    load_market(["SPY"], "2021-02-01", "2021-02-26", source="yahoo", cache_dir=tmp_path)  # inside: cached
    assert calls == [("2021-03-01", "2021-04-01"), ("2021-01-04", "2021-04-01")]


# -- tensor cache ----------------------------------------------------------------------------------
def test_panel_cache_round_trip(tmp_path, market_dir):
    import torch

    d = load_market(["SPY", "IWM"], "2019-01-01", "2019-12-31", source="csv", csv_dir=market_dir, history_days=10)
    path = save_panel_cache(d, tmp_path / "panel.pt")
    assert [p.name for p in tmp_path.iterdir()] == ["panel.pt"]  # no temp file left behind
    raw = torch.load(path, weights_only=True)
    assert isinstance(raw["values"], torch.Tensor) and raw["values"].dtype == torch.float64
    e = load_panel_cache(path, tickers=["SPY", "IWM"])
    assert e.fingerprint == d.fingerprint and e.source == "cache"
    assert e.period_start == d.period_start and e.history_rows() == 10 and e.filled == d.filled
    assert e.period_end == d.period_end == pd.Timestamp("2019-12-31")
    pd.testing.assert_frame_equal(e.panel, d.panel)
    assert e.close.equals(d.close) and e.tickers == d.tickers


def test_panel_cache_refusals(tmp_path, market_dir):
    import torch

    d = load_market(["SPY", "IWM"], "2019-01-01", "2019-03-31", source="csv", csv_dir=market_dir)
    path = save_panel_cache(d, tmp_path / "panel.pt")
    with pytest.raises(RLTraderError, match="holds SPY,IWM, not SPY,QQQ"):
        load_panel_cache(path, tickers=["SPY", "QQQ"])
    raw = torch.load(path, weights_only=True)
    raw["values"][5, 3] *= 1.01
    torch.save(raw, tmp_path / "tampered.pt")
    with pytest.raises(RLTraderError, match="failed its fingerprint check"):
        load_panel_cache(tmp_path / "tampered.pt")
    (tmp_path / "garbage.pt").write_bytes(b"not a torch file")
    torch.save({"format": "something else"}, tmp_path / "other.pt")
    for name in ("garbage.pt", "other.pt"):
        with pytest.raises(RLTraderError, match=f"^panel cache .*{name} cannot be read") as err:
            load_panel_cache(tmp_path / name)
        assert "\n" not in str(err.value)
    with pytest.raises(RLTraderError, match="panel cache not found"):
        load_panel_cache(tmp_path / "missing.pt")


def test_panel_cache_keeps_period_end_and_an_older_cache_has_none(tmp_path):
    import torch

    d = load_market(["SPY", "QQQ"], "2020-01-01", "2020-03-31", history_days=5)
    path = save_panel_cache(d, tmp_path / "panel.pt")
    assert load_panel_cache(path).period_end == pd.Timestamp("2020-03-31") == d.period_end
    raw = torch.load(path, weights_only=True)
    del raw["period_end"]  # what rl-trader-panel/1 files written before the field hold
    torch.save(raw, tmp_path / "old.pt")
    old = load_panel_cache(tmp_path / "old.pt")
    assert old.period_end is None and old.fingerprint == d.fingerprint
    assert select_period(old, "2020-01-02", "2020-03-31").panel.index[-1] == pd.Timestamp("2020-03-31")
    with pytest.raises(RLTraderError, match=r"^the panel covers 2019-12-25..2020-03-31, not 2020-01-02..2020-04-01$"):
        select_period(old, "2020-01-02", "2020-04-01")  # without period_end, the last row bounds it


# -- selecting a period from a loaded panel (the --cache-path of train) -------------------------------
def test_select_period_rows_and_bounds():
    d = load_market(["SPY", "QQQ"], "2015-01-01", "2019-12-31")  # business days
    s = select_period(d, "2017-01-01", "2017-12-31")
    assert s.panel.index[0] == pd.Timestamp("2017-01-02") == s.period_start  # the 1st is a Sunday
    assert s.panel.index[-1] == pd.Timestamp("2017-12-29") and len(s.panel) == 260 and s.history_rows() == 0
    assert s.period_end == pd.Timestamp("2017-12-31") and d.period_end == pd.Timestamp("2019-12-31")
    pd.testing.assert_frame_equal(s.panel, d.panel.loc["2017-01-01":"2017-12-31"])
    assert s.source == "synthetic" and s.tickers == d.tickers and s.filled == d.filled
    assert s.fingerprint == fingerprint(s.panel, s.tickers) != d.fingerprint


def test_select_period_history_is_past_rows_only():
    d = load_market(["SPY", "QQQ"], "2015-01-01", "2019-12-31", history_days=3)
    s = select_period(d, "2016-01-01", "2016-06-30", history_days=20)
    assert s.history_rows() == 20 and s.period_start == pd.Timestamp("2016-01-01")
    assert s.panel.index[0] == pd.Timestamp("2015-12-04") and (s.panel.index[:20] < s.period_start).all()
    assert s.panel.index[-1] == pd.Timestamp("2016-06-30")
    pd.testing.assert_frame_equal(s.panel, d.panel.iloc[d.panel.index.get_loc("2015-12-04"):].loc[:"2016-06-30"])
    early = select_period(d, "2015-01-01", "2015-03-31", history_days=20)  # the panel has 3 rows before
    assert early.history_rows() == 3 and early.panel.index[0] == d.panel.index[0]
    assert early.period_start == pd.Timestamp("2015-01-01")


def test_select_period_whole_range_is_the_same_panel():
    d = load_market(["SPY", "QQQ", "IWM"], "2015-01-01", "2019-12-31", history_days=10)
    s = select_period(d, "2015-01-01", "2019-12-31", history_days=10)
    assert s.fingerprint == d.fingerprint and s.panel.equals(d.panel)
    assert s.period_start == d.period_start and s.period_end == d.period_end
    assert s.summary() == d.summary()


def test_select_period_equals_loading_the_period(tmp_path):
    """From a wider CSV panel, the selection holds what load_market would load for the period itself."""
    days = pd.bdate_range("2020-11-02", "2021-02-26")
    _write(tmp_path, "AAA", days, np.linspace(10, 20, len(days)))
    _write(tmp_path, "BBB", days.delete([10, 55]), np.linspace(30, 40, len(days) - 2))
    whole = _load(tmp_path, ["AAA", "BBB"], start="2020-11-01", end="2021-02-28")
    s = select_period(whole, "2021-01-01", "2021-01-31", history_days=15)
    e = _load(tmp_path, ["AAA", "BBB"], start="2021-01-01", end="2021-01-31", history_days=15)
    assert s.fingerprint == e.fingerprint and s.panel.equals(e.panel)
    assert (s.period_start, s.period_end) == (e.period_start, e.period_end)
    assert whole.filled == {"AAA": 0, "BBB": 2} == s.filled  # the whole panel's counts, kept
    assert e.filled == {"AAA": 0, "BBB": 1}


def test_select_period_after_a_cache_round_trip(tmp_path):
    d = load_market(["SPY", "QQQ"], "2015-01-01", "2024-12-31")
    cache = load_panel_cache(save_panel_cache(d, tmp_path / "panel.pt"))
    s = select_period(cache, "2015-01-01", "2019-12-31", history_days=60)
    assert s.source == "cache" and s.panel.index[-1] == pd.Timestamp("2019-12-31")
    assert s.panel.equals(select_period(d, "2015-01-01", "2019-12-31").panel)
    assert not (s.panel.index > pd.Timestamp("2019-12-31")).any()  # no test year leaks into training


@pytest.mark.parametrize("start,end,kw,message", [
    ("2014-12-31", "2016-12-31", {}, r"^the panel covers 2015-01-01..2019-12-31, not 2014-12-31..2016-12-31$"),
    ("2020-01-01", "2024-12-31", {}, r"^the panel covers 2015-01-01..2019-12-31, not 2020-01-01..2024-12-31$"),
    ("2019-06-01", "2020-01-01", {}, r"^the panel covers 2015-01-01..2019-12-31, not 2019-06-01..2020-01-01$"),
    ("2019-12-28", "2019-12-31", {"min_days": 5},
     r"^2019-12-28..2019-12-31 holds 2 trading day\(s\) of the panel \(the panel covers 2015-01-01..2019-12-31\): "
     r"shorter than the feature warm-up / minimum of 5 days$"),
    ("2019-12-28", "2019-12-29", {"min_days": 1},
     r"^2019-12-28..2019-12-29 holds 0 trading day\(s\) of the panel"),
    ("2019-02-01", "2019-01-01", {}, r"^start 2019-02-01 is after end 2019-01-01$"),
    ("2019-13-45", "2019-12-31", {}, r"^bad start date '2019-13-45' .*; use YYYY-MM-DD$"),
    ("2019-01-01", "2019-12-31", {"history_days": -1}, r"^history_days must be >= 0 and min_days >= 1 \(got -1, 2\)$"),
])
def test_select_period_refusals_are_one_line(start, end, kw, message):
    d = load_market(["SPY", "QQQ"], "2015-01-01", "2019-12-31")
    with pytest.raises(RLTraderError, match=message) as err:
        select_period(d, start, end, **kw)
    assert "\n" not in str(err.value)


# -- CLI -----------------------------------------------------------------------------------------
def test_cli_data_fetch_csv(tmp_path, market_dir):
    from typer.testing import CliRunner

    from rltrader.cli import app

    out = tmp_path / "panel.pt"
    result = CliRunner().invoke(app, ["data", "fetch", "--tickers", "SPY,QQQ,IWM", "--start", "2015-01-01",
                                      "--end", "2019-12-31", "--source", "csv", "--csv-dir", str(market_dir),
                                      "--cache-out", str(out)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    expected = load_market(REAL, "2015-01-01", "2019-12-31", source="csv", csv_dir=market_dir)
    lines = result.output.splitlines()
    for t in REAL:
        cells = next([c.strip() for c in line.split("│")] for line in lines if f"│ {t} " in line)
        assert cells[1:6] == [t, "1258", "2015-01-02", "2019-12-31", "0"]
    assert f"fingerprint {expected.fingerprint}" in result.output and "csv: 1258 trading days" in result.output
    assert load_panel_cache(out, REAL).fingerprint == expected.fingerprint


def test_cli_data_fetch_help_and_synthetic_default():
    from typer.testing import CliRunner

    from rltrader.cli import app

    runner = CliRunner()
    help_text = runner.invoke(app, ["data", "fetch", "--help"], env={"COLUMNS": "200"}).output
    for option in ("--tickers", "--start", "--end", "--source", "--csv-dir", "--seed", "--cache-dir", "--cache-out"):
        assert option in help_text
    assert "yfinance" in help_text  # SOURCE_HELP / CSV_DIR_HELP
    result = runner.invoke(app, ["data", "fetch", "--tickers", "SPY", "--start", "2020-01-01", "--end", "2020-03-31"])
    assert result.exit_code == 0, result.output
    assert "synthetic: 65 trading days" in result.output


def test_cli_missing_ticker_is_one_line_and_exit_1(tmp_path, market_dir, monkeypatch, capsys):
    from rltrader import cli

    monkeypatch.setattr(sys, "argv", ["rltrader", "data", "fetch", "--tickers", "SPY,NOPE", "--source", "csv",
                                      "--csv-dir", str(market_dir)])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err == f"error: no CSV for NOPE in {market_dir} (expected <TICKER>.csv)\n"
