"""The market data layer: one aligned, validated daily OHLCV panel, read by training and backtests.

Sources: `synthetic` (the embedded, offline default), `csv` (a folder of yfinance CSV exports)
and `yahoo` (yfinance download, cached as parquet so a second run is offline). Whatever the
source, the result is a `MarketData`: the panel, its source and a sha256 fingerprint of its
values, so checkpoints and reports can say exactly which data they used. *Signal* tickers (e.g.
^VIX for a feature set) load with the universe from the same source into the same panel, on the
traded tickers' calendar with the same gap rule, but are not among `tickers`: never traded.

Bad input is a one-line `RLTraderError`. A day missing from one ticker's series (another ticker
traded) is filled flat at that ticker's previous close, volume 0, and counted: never back-filled
(that would leak the future), and never a copy of the previous bar, whose Open a next-open fill
would then trade at, a price of the past. `select_period` cuts a period out of a loaded panel
(a tensor cache) so that training never sees rows after the period it asked for.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from rl_strategy.errors import RLTraderError

FIELDS = ("Open", "High", "Low", "Close", "Volume")
PRICE_FIELDS = ("Open", "High", "Low", "Close")
SOURCES = ("synthetic", "csv", "yahoo")
CACHE_FORMAT = "rl-trader-panel/1"
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True)
class MarketData:
    """A validated panel. Rows before `period_start` are warm-up history (past data only)."""

    panel: pd.DataFrame          # index Date; columns MultiIndex (field, ticker); float64
    tickers: tuple[str, ...]
    source: str                  # synthetic | csv | yahoo | cache
    fingerprint: str             # sha256 of tickers, dates and values
    filled: dict[str, int]       # ticker -> days filled flat at the previous close
    period_start: pd.Timestamp   # first row of the requested period
    period_end: pd.Timestamp | None = None  # last day requested (None: a cache older than the field)
    requested_start: pd.Timestamp | None = None  # first day requested (may be a holiday before period_start)
    signals: tuple[str, ...] = ()  # panel tickers read by features only, never traded

    def field(self, name: str) -> pd.DataFrame:
        """One field as a dates x tickers frame, tickers in the requested order."""
        return self.panel[name][list(self.tickers)]

    @property
    def open(self) -> pd.DataFrame:
        return self.field("Open")

    @property
    def high(self) -> pd.DataFrame:
        return self.field("High")

    @property
    def low(self) -> pd.DataFrame:
        return self.field("Low")

    @property
    def close(self) -> pd.DataFrame:
        return self.field("Close")

    @property
    def volume(self) -> pd.DataFrame:
        return self.field("Volume")

    @property
    def signal_close(self) -> pd.DataFrame:
        """Closes of the signal tickers, dates x signals (empty without signals)."""
        return self.panel["Close"][list(self.signals)]

    def history_rows(self) -> int:
        """Rows of warm-up history before the requested period."""
        return int(self.panel.index.searchsorted(self.period_start))

    def summary(self) -> dict:
        """Plain values for logs, reports and the CLI table."""
        idx = self.panel.index
        return {"source": self.source, "tickers": list(self.tickers), "rows": len(idx),
                "history_rows": self.history_rows(), "period_rows": len(idx) - self.history_rows(),
                "first_day": str(idx[0].date()), "period_start": str(self.period_start.date()),
                "last_day": str(idx[-1].date()), "filled": dict(self.filled), "fingerprint": self.fingerprint}


def fingerprint(panel: pd.DataFrame, tickers: Sequence[str]) -> str:
    """sha256 over the tickers, the ISO dates and the float64 values (C order): machine-independent."""
    h = hashlib.sha256()
    h.update(",".join(tickers).encode())
    h.update(",".join(d.strftime("%Y-%m-%d") for d in panel.index).encode())
    h.update(np.ascontiguousarray(panel.to_numpy(np.float64), dtype="<f8").tobytes())  # little-endian everywhere
    return h.hexdigest()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


# -- reading one ticker's CSV ----------------------------------------------------------------------
def read_yfinance_csv(path: Path, ticker: str) -> pd.DataFrame:
    """A yfinance `to_csv` export: the flat `Date,Open,...` header or the multi-ticker one
    (`Price,...` / `Ticker,...` / often `Date,,,`), columns in any order, Volume optional."""
    try:
        raw = pd.read_csv(path, header=None, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise RLTraderError(f"{path}: cannot read CSV ({_first_line(exc)})") from None
    first_col = raw.iloc[:, 0].str.strip()
    n_head = int(np.argmax(first_col.str.match(_ISO_DATE).to_numpy())) if len(raw) else 0
    if not len(raw) or not _ISO_DATE.match(first_col.iloc[n_head]):
        raise RLTraderError(f"{path}: no rows starting with a YYYY-MM-DD date (not a yfinance CSV export)")
    head = raw.iloc[:n_head]
    names = _field_names(head, path)
    keep = _ticker_columns(head, ticker, path)
    body = raw.iloc[n_head:]
    frame = pd.DataFrame({names[j]: pd.to_numeric(body.iloc[:, j].str.strip(), errors="coerce") for j in keep})
    frame.index = _parse_dates(first_col.iloc[n_head:], n_head, path)
    return _standard_fields(frame, path, ticker)


def _field_names(head: pd.DataFrame, path: Path) -> dict[int, str]:
    """Column position -> field name, from the header row that names the fields."""
    for _, row in head.iterrows():
        names = {j: str(row.iloc[j]).strip().title() for j in range(1, len(row))}
        if {"Close", "Adj Close"} & set(names.values()):
            return names
    raise RLTraderError(f"{path}: no header row naming a Close column (not a yfinance CSV export)")


def _ticker_columns(head: pd.DataFrame, ticker: str, path: Path) -> list[int]:
    """The columns of `ticker`: all of them, unless a `Ticker` header row says otherwise. A file
    whose Ticker row names only other tickers is refused, even a one-ticker export: prices saved
    under another ticker's name would otherwise be traded (or compared with) as that ticker."""
    columns = list(range(1, head.shape[1]))
    rows = [row for _, row in head.iterrows() if str(row.iloc[0]).strip() == "Ticker"]
    if not rows:
        return columns
    labels = {j: str(rows[0].iloc[j]).strip() for j in columns}
    mine = [j for j in columns if labels[j] == ticker]
    if not mine:
        raise RLTraderError(f"{path}: its Ticker row holds {', '.join(sorted(set(labels.values())))}, not {ticker} "
                            "(the file's name)")
    return mine


def _parse_dates(cells: pd.Series, n_head: int, path: Path) -> pd.DatetimeIndex:
    """The local calendar day of each row (the YYYY-MM-DD prefix: a time or UTC offset is dropped)."""
    days = pd.to_datetime(cells.str[:10], format="%Y-%m-%d", errors="coerce")
    if days.isna().any():
        i = int(np.argmax(days.isna().to_numpy()))
        raise RLTraderError(f"{path}: unreadable date {cells.iloc[i]!r} on line {n_head + i + 1}")
    return pd.DatetimeIndex(days, name="Date").as_unit("ns")


def _standard_fields(frame: pd.DataFrame, path: Path, ticker: str) -> pd.DataFrame:
    """FIELDS columns as float64: Adj Close stands in for a missing Close, a missing Volume is 0."""
    if "Close" not in frame.columns and "Adj Close" in frame.columns:
        frame = frame.rename(columns={"Adj Close": "Close"})
    missing = [f for f in PRICE_FIELDS if f not in frame.columns]
    if missing:
        raise RLTraderError(f"{path}: missing column(s) {', '.join(missing)} for {ticker}")
    if "Volume" not in frame.columns:
        frame["Volume"] = 0.0
    frame["Volume"] = frame["Volume"].fillna(0.0)  # indices (^VIX) have no volume
    return frame[list(FIELDS)].astype(np.float64)


# -- sources -------------------------------------------------------------------------------------
def _from_csv(tickers: Sequence[str], csv_dir: str | Path | None) -> dict[str, pd.DataFrame]:
    if csv_dir is None:
        raise RLTraderError("the csv source needs --csv-dir (a folder with one <TICKER>.csv per ticker)")
    folder = Path(csv_dir)
    if not folder.is_dir():
        raise RLTraderError(f"CSV folder not found: {folder}")
    missing = [t for t in tickers if not (folder / f"{t}.csv").is_file()]
    if missing:
        raise RLTraderError(f"no CSV for {', '.join(missing)} in {folder} (expected <TICKER>.csv)")
    return {t: read_yfinance_csv(folder / f"{t}.csv", t) for t in tickers}


def _from_synthetic(tickers: Sequence[str], start: pd.Timestamp, end: pd.Timestamp,
                    seed: int) -> dict[str, pd.DataFrame]:
    from rl_strategy.synthetic import generate_market  # numpy-heavy: only when asked for

    return generate_market(tickers, start, end, seed)


# -- yahoo: download + parquet cache -------------------------------------------------------------
def _cache_file(cache_dir: Path, ticker: str) -> Path:
    return cache_dir / f"{ticker.replace('^', '_').replace('/', '_')}.parquet"


def _read_cache(path: Path) -> tuple[pd.DataFrame | None, dict]:
    """A cached frame and the range it was downloaded for; a corrupt file is re-downloaded."""
    if not path.is_file():
        return None, {}
    try:
        frame = pd.read_parquet(path)
    except (OSError, ValueError):
        return None, {}
    return frame, dict(frame.attrs.get("rl_trader", {}))


def _covers(frame: pd.DataFrame | None, meta: dict, start: pd.Timestamp, end: pd.Timestamp) -> bool:
    """The download covered [start, end] and `end` was already past then (no newer bar can be missing)."""
    if frame is None or frame.empty or not {"start", "end", "downloaded"} <= meta.keys():
        return False
    covered_to = min(pd.Timestamp(meta["end"]), pd.Timestamp(meta["downloaded"]) - pd.Timedelta(days=1))
    return pd.Timestamp(meta["start"]) <= start and covered_to >= end


def _write_cache(path: Path, frame: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> None:
    from rl_strategy.atomic import atomic_write_bytes

    frame = frame.copy()
    frame.attrs["rl_trader"] = {"start": str(start.date()), "end": str(end.date()),
                                "downloaded": str(pd.Timestamp.now().date())}
    atomic_write_bytes(path, frame.to_parquet)


def _from_yahoo(tickers: Sequence[str], start: pd.Timestamp, end: pd.Timestamp,
                cache_dir: str | Path | None) -> dict[str, pd.DataFrame]:
    """Serve each ticker from the parquet cache when it covers the range; download the rest
    over the union with their cached ranges, so a cache only grows."""
    cache = Path(cache_dir or "data/cache")
    cached = {t: _read_cache(_cache_file(cache, t)) for t in tickers}
    frames = {t: f for t, (f, meta) in cached.items() if f is not None and _covers(f, meta, start, end)}
    need = [t for t in tickers if t not in frames]
    if not need:
        return frames
    metas = [cached[t][1] for t in need if {"start", "end"} <= cached[t][1].keys()]
    lo = min([start, *(pd.Timestamp(m["start"]) for m in metas)])
    hi = max([end, *(pd.Timestamp(m["end"]) for m in metas)])
    got, failed = _download(need, lo, hi)
    for t, frame in got.items():  # keep what did arrive even when another ticker failed
        _write_cache(_cache_file(cache, t), frame, lo, hi)
        frames[t] = frame
    if failed:
        raise RLTraderError(f"yahoo returned no data for {', '.join(failed)} (offline, rate-limited or unknown ticker?)")
    return frames


def _download(tickers: Sequence[str], start: pd.Timestamp,
              end: pd.Timestamp) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """yf.download; returns the frames it got and the tickers it silently returned nothing for."""
    import logging
    import warnings

    import yfinance as yf

    # yfinance logs every failed request and trips pandas deprecation warnings: the one-line
    # error says what failed, so silence its logger and those warnings for this call only.
    logger = logging.getLogger("yfinance")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            raw = yf.download(list(tickers), start=start.strftime("%Y-%m-%d"),
                              end=(end + pd.Timedelta(days=1)).strftime("%Y-%m-%d"), auto_adjust=True,
                              progress=False, group_by="ticker", threads=False)
    except Exception as exc:  # noqa: BLE001 - yfinance and its HTTP stack raise many types
        raise RLTraderError(f"yahoo download failed for {', '.join(tickers)}: {_first_line(exc)}") from None
    finally:
        logger.setLevel(level)
    got = {t: f for t in tickers if (f := _yahoo_frame(raw, t, len(tickers))) is not None}
    return got, [t for t in tickers if t not in got]


def _yahoo_frame(raw: pd.DataFrame | None, ticker: str, n_tickers: int) -> pd.DataFrame | None:
    """One ticker's OHLCV out of yf.download's frame; None when yfinance returned nothing for it
    (it gives an empty frame or all-NaN columns instead of raising)."""
    if not isinstance(raw, pd.DataFrame) or raw.empty:
        return None
    if isinstance(raw.columns, pd.MultiIndex):
        levels = [lv for lv in range(raw.columns.nlevels) if ticker in raw.columns.get_level_values(lv)]
        if not levels:
            return None
        frame = raw.xs(ticker, axis=1, level=levels[0])
    elif n_tickers == 1:
        frame = raw
    else:
        return None
    frame = frame.rename(columns=lambda c: str(c).strip().title())
    if "Close" not in frame.columns:
        return None
    frame = frame.dropna(subset=["Close"])  # days only another ticker traded, or nothing at all
    if frame.empty:
        return None
    frame = frame.reindex(columns=list(FIELDS)).astype(np.float64)
    frame["Volume"] = frame["Volume"].fillna(0.0)
    index = pd.DatetimeIndex(frame.index)
    frame.index = (index.tz_localize(None) if index.tz is not None else index).normalize()
    return frame


# -- validation and alignment ----------------------------------------------------------------------
def _normalize(frame: pd.DataFrame, ticker: str) -> pd.DataFrame:
    """Every source's frame as FIELDS float64 columns on a tz-naive nanosecond "Date" index
    (parquet hands back microseconds; mixed units would not align)."""
    missing = [f for f in FIELDS if f not in frame.columns]
    if missing:
        raise RLTraderError(f"{ticker}: the data has no {', '.join(missing)} column(s)")
    frame = frame[list(FIELDS)].astype(np.float64)
    index = pd.DatetimeIndex(frame.index)
    frame.index = (index.tz_localize(None) if index.tz is not None else index).as_unit("ns").rename("Date")
    return frame


def _check_order(frame: pd.DataFrame, ticker: str) -> None:
    """Duplicated or unsorted dates mean a broken file: refuse rather than guess."""
    idx = frame.index
    if idx.has_duplicates:
        raise RLTraderError(f"{ticker}: duplicated date {idx[idx.duplicated()][0].date()}")
    if not idx.is_monotonic_increasing:
        i = int(np.argmax(np.diff(idx.asi8) < 0))
        raise RLTraderError(f"{ticker}: dates are not sorted ({idx[i + 1].date()} comes after {idx[i].date()})")


def _check_prices(frame: pd.DataFrame, ticker: str) -> None:
    prices = frame[list(PRICE_FIELDS)].to_numpy()
    bad = ~np.isfinite(prices) | (prices <= 0)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise RLTraderError(f"{ticker}: non-positive or missing price on {frame.index[row].date()} "
                            f"({PRICE_FIELDS[col]} = {prices[row, col]})")


def _calendar(frames: dict[str, pd.DataFrame], tickers: Sequence[str], signals: Sequence[str] = ()) -> pd.DatetimeIndex:
    """Union of the traded tickers' dates inside the common span of every ticker, signals included
    (latest first day .. earliest last day). A day only a signal has is not a trading day."""
    span = [*tickers, *signals]
    first = max(frames[t].index[0] for t in span)
    last = min(frames[t].index[-1] for t in span)
    if first > last:
        spans = ", ".join(f"{t} {frames[t].index[0].date()}..{frames[t].index[-1].date()}" for t in span)
        raise RLTraderError(f"the tickers' calendars do not overlap ({spans})")
    union = frames[tickers[0]].index
    for t in tickers[1:]:
        union = union.union(frames[t].index)
    return union[(union >= first) & (union <= last)].rename("Date")


def _fill_gaps(frame: pd.DataFrame, dates: pd.DatetimeIndex, ticker: str) -> tuple[pd.DataFrame, int]:
    """`frame` on `dates`: a missing day is a flat bar at the last earlier close (never a later
    one), volume 0, so an order decided the day before fills at that close, not at a past open.
    Prices are checked on the rows used, including the bar whose close starts the first date."""
    first = frame.index.searchsorted(dates[0], side="right") - 1  # a bar on/before dates[0] exists
    used = frame.iloc[first:frame.index.searchsorted(dates[-1], side="right")]
    _check_prices(used, ticker)
    gap = ~dates.isin(used.index)
    close = used["Close"].reindex(dates, method="ffill")
    bars = used.reindex(dates)
    bars.loc[gap] = pd.DataFrame({f: close for f in PRICE_FIELDS}).assign(Volume=0.0)[gap]
    return bars, int(gap.sum())


def _panel(frames: dict[str, pd.DataFrame], dates: pd.DatetimeIndex,
           tickers: Sequence[str]) -> tuple[pd.DataFrame, dict[str, int]]:
    parts, filled = {}, {}
    for t in tickers:
        parts[t], filled[t] = _fill_gaps(frames[t], dates, t)
    panel = pd.concat([parts[t][f].rename(t) for f in FIELDS for t in tickers], axis=1)
    panel.columns = pd.MultiIndex.from_product([FIELDS, list(tickers)], names=["field", "ticker"])
    return panel.astype(np.float64), filled


def _clean_tickers(tickers: Sequence[str] | str) -> list[str]:
    if isinstance(tickers, str):
        tickers = tickers.split(",")
    clean = [t.strip() for t in tickers if t and t.strip()]
    if not clean:
        raise RLTraderError("no tickers given")
    dupes = sorted({t for t in clean if clean.count(t) > 1})
    if dupes:
        raise RLTraderError(f"ticker(s) given twice: {', '.join(dupes)}")
    return clean


def _parse_day(value, name: str) -> pd.Timestamp:
    try:
        day = pd.Timestamp(value)
    except (TypeError, ValueError) as exc:
        raise RLTraderError(f"bad {name} date {value!r} ({_first_line(exc)}); use YYYY-MM-DD") from None
    if pd.isna(day):
        raise RLTraderError(f"bad {name} date {value!r}; use YYYY-MM-DD")
    return (day.tz_localize(None) if day.tz is not None else day).normalize()


def _load_frames(source: str, tickers: list[str], fetch_start: pd.Timestamp, end: pd.Timestamp,
                 csv_dir: str | Path | None, cache_dir: str | Path | None, seed: int) -> dict[str, pd.DataFrame]:
    if source == "csv":
        return _from_csv(tickers, csv_dir)
    if source == "synthetic":
        return _from_synthetic(tickers, fetch_start, end, seed)
    if source == "yahoo":
        return _from_yahoo(tickers, fetch_start, end, cache_dir)
    raise RLTraderError(f"unknown data source {source!r} (use one of {', '.join(SOURCES)})")


def _parse_period(start, end, history_days: int, min_days: int) -> tuple[pd.Timestamp, pd.Timestamp]:
    start_ts, end_ts = _parse_day(start, "start"), _parse_day(end, "end")
    if start_ts > end_ts:
        raise RLTraderError(f"start {start_ts.date()} is after end {end_ts.date()}")
    if history_days < 0 or min_days < 1:
        raise RLTraderError(f"history_days must be >= 0 and min_days >= 1 (got {history_days}, {min_days})")
    return start_ts, end_ts


def load_market(tickers: Sequence[str], start, end, *, source: str = "synthetic",
                csv_dir: str | Path | None = None, cache_dir: str | Path | None = None, seed: int = 0,
                history_days: int = 0, min_days: int = 2, signals: Sequence[str] = ()) -> MarketData:
    """Load, validate and align `tickers` over [start, end], plus up to `history_days` trading
    rows before `start` (feature warm-up from past data) when the source has them. `signals`:
    tickers loaded into the same panel for features only (those also in `tickers` are skipped)."""
    tickers = _clean_tickers(tickers)
    signals = [s for s in _clean_tickers(signals) if s not in tickers] if signals else []
    start_ts, end_ts = _parse_period(start, end, history_days, min_days)
    # Calendar days that hold `history_days` trading rows, holidays included, with room to spare.
    fetch_start = start_ts - pd.Timedelta(days=int(history_days * 1.6) + 10) if history_days else start_ts
    frames = _load_frames(source, tickers + signals, fetch_start, end_ts, csv_dir, cache_dir, seed)
    for t in tickers + signals:
        frames[t] = _normalize(frames[t], t)
        _check_order(frames[t], t)
        frames[t] = frames[t].loc[fetch_start:end_ts]
        if frames[t].loc[start_ts:].empty:
            raise RLTraderError(f"{t} has no data between {start_ts.date()} and {end_ts.date()}")
    dates = _calendar(frames, tickers, signals)
    first_in = int(dates.searchsorted(start_ts))
    in_period = len(dates) - first_in
    if in_period < min_days:
        raise RLTraderError(f"{start_ts.date()}..{end_ts.date()} holds {in_period} common trading day(s) of "
                            f"{','.join(tickers)}: shorter than the feature warm-up / minimum of {min_days} days")
    dates = dates[max(0, first_in - history_days):]
    panel, filled = _panel(frames, dates, tickers + signals)
    return MarketData(panel=panel, tickers=tuple(tickers), source=source,
                      fingerprint=fingerprint(panel, tickers + signals), filled=filled,
                      period_start=dates[min(first_in, history_days)], period_end=end_ts, requested_start=start_ts,
                      signals=tuple(signals))


def select_period(data: MarketData, start, end, *, history_days: int = 0, min_days: int = 2) -> MarketData:
    """The rows of `data` in [start, end] plus up to `history_days` rows before `start` (past rows
    only), so a whole-panel cache cannot leak days after `end` into training. Refuses a window the
    panel does not cover rather than return a shorter period. `filled` keeps the whole panel's
    counts: a fill is not marked per row, so the kept rows' share of them is unknown."""
    start_ts, end_ts = _parse_period(start, end, history_days, min_days)
    idx = data.panel.index
    last = data.period_end if data.period_end is not None else idx[-1]
    lo = idx[0] if data.requested_start is None else min(idx[0], data.requested_start)
    covers = f"the panel covers {lo.date()}..{last.date()}"
    if start_ts < lo or end_ts > last:
        raise RLTraderError(f"{covers}, not {start_ts.date()}..{end_ts.date()}")
    first_in, stop = int(idx.searchsorted(start_ts)), int(idx.searchsorted(end_ts, side="right"))
    if stop - first_in < min_days:
        raise RLTraderError(f"{start_ts.date()}..{end_ts.date()} holds {stop - first_in} trading day(s) of the "
                            f"panel ({covers}): shorter than the feature warm-up / minimum of {min_days} days")
    panel = data.panel.iloc[max(0, first_in - history_days):stop]
    return MarketData(panel=panel, tickers=data.tickers, source=data.source,
                      fingerprint=fingerprint(panel, data.tickers + data.signals), filled=dict(data.filled),
                      period_start=idx[first_in], period_end=end_ts, requested_start=start_ts, signals=data.signals)


# -- tensor cache (the --cache-path of train and backtest) ---------------------------------------
def save_panel_cache(data: MarketData, path: str | Path) -> Path:
    """Save the panel as plain tensors, strings, ints and lists (loadable with
    `torch.load(weights_only=True)`, so loading it runs no pickled code), atomically."""
    import torch

    from rl_strategy.atomic import atomic_write_bytes

    payload = {"format": CACHE_FORMAT, "tickers": list(data.tickers), "signals": list(data.signals),
               "fields": list(FIELDS),
               "dates": torch.as_tensor(data.panel.index.as_unit("ns").asi8.copy()),
               "values": torch.as_tensor(np.ascontiguousarray(data.panel.to_numpy(np.float64))),
               "source": data.source, "fingerprint": data.fingerprint,
               "filled": {t: int(n) for t, n in data.filled.items()},
               "period_start": str(data.period_start.date()),
               "period_end": None if data.period_end is None else str(data.period_end.date()),
               "requested_start": None if data.requested_start is None else str(data.requested_start.date())}
    return atomic_write_bytes(path, lambda fh: torch.save(payload, fh))


def load_panel_cache(path: str | Path, tickers: Sequence[str] | None = None, signals: Sequence[str] = ()) -> MarketData:
    """A tensor cache written by `save_panel_cache`; refuses a missing, corrupt or modified file
    (fingerprint check), one that holds other tickers than `tickers` and one without `signals`."""
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise RLTraderError(f"panel cache not found: {path}")
    try:
        p = torch.load(path, weights_only=True, map_location="cpu")
        if not isinstance(p, dict) or p.get("format") != CACHE_FORMAT or list(p["fields"]) != list(FIELDS):
            raise ValueError(f"not an {CACHE_FORMAT} file")
        cached, cached_signals = list(p["tickers"]), list(p.get("signals", []))  # no signals before the key
        index = pd.DatetimeIndex(p["dates"].numpy().astype("datetime64[ns]"), name="Date")
        columns = pd.MultiIndex.from_product([FIELDS, cached + cached_signals], names=["field", "ticker"])
        panel = pd.DataFrame(p["values"].numpy().astype(np.float64), index=index, columns=columns)
        filled = {str(t): int(n) for t, n in p["filled"].items()}
        period_start, expected = pd.Timestamp(p["period_start"]), str(p["fingerprint"])
        period_end = None if p.get("period_end") is None else pd.Timestamp(p["period_end"])
        requested = None if p.get("requested_start") is None else pd.Timestamp(p["requested_start"])
    except (OSError, EOFError, RuntimeError, ValueError, TypeError, KeyError, AttributeError,
            pickle.UnpicklingError) as exc:
        raise RLTraderError(f"panel cache {path} cannot be read ({_first_line(exc)})") from None
    if fingerprint(panel, cached + cached_signals) != expected:
        raise RLTraderError(f"panel cache {path} failed its fingerprint check (corrupted or modified)")
    if tickers is not None and list(tickers) != cached:
        raise RLTraderError(f"panel cache {path} holds {','.join(cached)}, not {','.join(tickers)}")
    missing = [s for s in signals if s not in cached_signals and s not in cached]
    if missing:
        raise RLTraderError(f"panel cache {path} holds no {','.join(missing)} (signals of the feature sets or the "
                            f"criteria reference): write it "
                            f"with `rltrader data fetch --signals {','.join(missing)} --cache-out ...`")
    return MarketData(panel=panel, tickers=tuple(cached), source="cache", fingerprint=expected,
                      filled=filled, period_start=period_start, period_end=period_end, requested_start=requested,
                      signals=tuple(cached_signals))
