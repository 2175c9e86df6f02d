"""The market data layer: one aligned, validated daily OHLCV panel, read by training and backtests.

Sources: `synthetic` (the embedded, offline default), `csv` (a folder of yfinance CSV exports)
and `yahoo` (yfinance download, cached as parquet so a second run is offline). Whatever the
source, the result is a `MarketData`: the panel, its source and a sha256 fingerprint of its
values, so checkpoints and reports can say exactly which data they used.

Bad input is a one-line `RLTraderError`. Gaps inside a series are forward-filled (never
back-filled: that would leak the future) and counted.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from rl_strategy.errors import RLTraderError

FIELDS = ("Open", "High", "Low", "Close", "Volume")
PRICE_FIELDS = ("Open", "High", "Low", "Close")
SOURCES = ("synthetic", "csv", "yahoo")


@dataclass(frozen=True)
class MarketData:
    panel: pd.DataFrame          # index Date; columns MultiIndex (field, ticker); float64
    tickers: tuple[str, ...]
    source: str
    fingerprint: str
    filled: dict[str, int]       # ticker -> days forward-filled inside its series
    period_start: pd.Timestamp   # first row of the requested period; earlier rows are warm-up history

    def field(self, name: str) -> pd.DataFrame:
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

    def history_rows(self) -> int:
        return int(self.panel.index.searchsorted(self.period_start))

    def summary(self) -> dict:
        idx = self.panel.index
        return {"source": self.source, "tickers": list(self.tickers), "rows": len(idx) - self.history_rows(),
                "history_rows": self.history_rows(), "first_day": str(self.period_start.date()),
                "last_day": str(idx[-1].date()), "filled": dict(self.filled), "fingerprint": self.fingerprint}


def fingerprint(panel: pd.DataFrame, tickers: Sequence[str]) -> str:
    """sha256 over the tickers, the ISO dates and the float64 values (C order)."""
    h = hashlib.sha256()
    h.update(",".join(tickers).encode())
    h.update(",".join(d.strftime("%Y-%m-%d") for d in panel.index).encode())
    h.update(np.ascontiguousarray(panel.to_numpy(np.float64)).tobytes())
    return h.hexdigest()


# -- reading one ticker's frame --------------------------------------------------------------------
def read_yfinance_csv(path: Path, ticker: str) -> pd.DataFrame:
    """A yfinance `to_csv` export: flat `Date,Open,...` header or the two-row Price/Ticker header."""
    try:
        head = pd.read_csv(path, nrows=3, header=None, dtype=str)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise RLTraderError(f"{path}: cannot read CSV ({exc})") from None
    first_cell = str(head.iloc[0, 0]).strip()
    try:
        if first_cell == "Price":  # multi-ticker export: Price row, Ticker row, often a Date row
            skip = [1, 2] if len(head) > 2 and str(head.iloc[2, 0]).strip() == "Date" else [1]
            frame = pd.read_csv(path, skiprows=skip, index_col=0)
        else:
            frame = pd.read_csv(path, index_col=0)
        frame.index = pd.to_datetime(frame.index, format="ISO8601", utc=True).tz_localize(None).normalize()
    except (ValueError, pd.errors.ParserError) as exc:
        raise RLTraderError(f"{path}: not a yfinance CSV ({str(exc).splitlines()[0]})") from None
    frame.index.name = "Date"
    frame.columns = [str(c).strip().title() for c in frame.columns]
    if "Adj Close" in frame.columns and "Close" not in frame.columns:
        frame = frame.rename(columns={"Adj Close": "Close"})
    missing = [f for f in PRICE_FIELDS if f not in frame.columns]
    if missing:
        raise RLTraderError(f"{path}: missing column(s) {', '.join(missing)} for {ticker}")
    if "Volume" not in frame.columns:
        frame["Volume"] = 0.0
    return frame[list(FIELDS)].apply(pd.to_numeric, errors="coerce").astype(np.float64)


def _check_series(frame: pd.DataFrame, ticker: str) -> None:
    idx = frame.index
    if idx.has_duplicates:
        raise RLTraderError(f"{ticker}: duplicated date {idx[idx.duplicated()][0].date()}")
    if not idx.is_monotonic_increasing:
        raise RLTraderError(f"{ticker}: dates are not sorted (e.g. around {idx[np.argmax(np.diff(idx.asi8) < 0)].date()})")
    prices = frame[list(PRICE_FIELDS)].to_numpy()
    bad = ~np.isfinite(prices) | (prices <= 0)
    if bad.any():
        row = int(np.argmax(bad.any(axis=1)))
        raise RLTraderError(f"{ticker}: non-positive or missing price on {idx[row].date()}")


# -- sources -----------------------------------------------------------------------------------
def _from_csv(tickers: Sequence[str], csv_dir: str | Path | None) -> dict[str, pd.DataFrame]:
    if csv_dir is None:
        raise RLTraderError("--data-source csv needs --csv-dir (a folder with one <TICKER>.csv per ticker)")
    folder = Path(csv_dir)
    if not folder.is_dir():
        raise RLTraderError(f"CSV folder not found: {folder}")
    missing = [t for t in tickers if not (folder / f"{t}.csv").is_file()]
    if missing:
        raise RLTraderError(f"no CSV for {', '.join(missing)} in {folder}")
    return {t: read_yfinance_csv(folder / f"{t}.csv", t) for t in tickers}


def _from_synthetic(tickers: Sequence[str], start: pd.Timestamp, end: pd.Timestamp, seed: int) -> dict[str, pd.DataFrame]:
    from rl_strategy.synthetic import generate_market

    return generate_market(tickers, start, end, seed)


def _cache_file(cache_dir: Path, ticker: str) -> Path:
    return cache_dir / f"{ticker.replace('^', '_').replace('/', '_')}.parquet"


def _from_yahoo(tickers: Sequence[str], start: pd.Timestamp, end: pd.Timestamp,
                cache_dir: str | Path | None) -> dict[str, pd.DataFrame]:
    """Serve from the parquet cache when it covers the range; download the rest."""
    cache = Path(cache_dir or "data/cache")
    frames: dict[str, pd.DataFrame] = {}
    need: list[str] = []
    for t in tickers:
        f = _cache_file(cache, t)
        if f.is_file():
            cached = pd.read_parquet(f)
            if len(cached) and cached.index[0] <= start + pd.Timedelta(days=7) and cached.index[-1] >= end - pd.Timedelta(days=7):
                frames[t] = cached
                continue
        need.append(t)
    if need:
        for t, frame in _download(need, start, end).items():
            cache.mkdir(parents=True, exist_ok=True)
            from rl_strategy.atomic import atomic_write_bytes

            atomic_write_bytes(_cache_file(cache, t), lambda fh, fr=frame: fr.to_parquet(fh))
            frames[t] = frame
    return frames


def _download(tickers: Sequence[str], start: pd.Timestamp, end: pd.Timestamp) -> dict[str, pd.DataFrame]:
    import logging
    import warnings

    import yfinance as yf

    # yfinance logs every failed request and trips pandas deprecation warnings: the one-line
    # error below says what failed, so silence its logger and those warnings for this call only.
    logger = logging.getLogger("yfinance")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning)
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            warnings.filterwarnings("ignore", module="yfinance")
            raw = yf.download(list(tickers), start=start.strftime("%Y-%m-%d"),
                              end=(end + pd.Timedelta(days=1)).strftime("%Y-%m-%d"), auto_adjust=True,
                              progress=False, group_by="ticker", threads=False)
    except Exception as exc:  # yfinance raises many types on network trouble
        raise RLTraderError(f"yahoo download failed for {', '.join(tickers)}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    finally:
        logger.setLevel(level)
    out, failed = {}, []
    for t in tickers:
        try:
            frame = raw[t] if isinstance(raw.columns, pd.MultiIndex) else raw
            frame = frame[list(FIELDS)].dropna(how="all")
        except (KeyError, TypeError):
            frame = pd.DataFrame()
        if frame is None or frame.empty:
            failed.append(t)
            continue
        frame = frame.astype(np.float64)
        frame.index = pd.to_datetime(frame.index).tz_localize(None).normalize()
        frame.index.name = "Date"
        out[t] = frame
    if failed:
        raise RLTraderError(f"yahoo returned no data for {', '.join(failed)} (offline, rate-limited or unknown ticker?)")
    return out


# -- alignment ---------------------------------------------------------------------------------
def align(frames: dict[str, pd.DataFrame], tickers: Sequence[str]) -> tuple[pd.DataFrame, dict[str, int]]:
    """Common span (latest first day .. earliest last day), union of dates inside it, forward-fill only."""
    first = max(f.index[0] for f in frames.values())
    last = min(f.index[-1] for f in frames.values())
    if first > last:
        spans = ", ".join(f"{t} {frames[t].index[0].date()}..{frames[t].index[-1].date()}" for t in tickers)
        raise RLTraderError(f"the tickers' calendars do not overlap ({spans})")
    dates = pd.DatetimeIndex(sorted(set().union(*(f.loc[first:last].index for f in frames.values()))), name="Date")
    parts, filled = {}, {}
    for t in tickers:
        f = frames[t].loc[first:last].reindex(dates)
        filled[t] = int(f["Close"].isna().sum())
        parts[t] = f.ffill()  # the first row exists for every ticker (common span): never back-filled
    panel = pd.concat(parts, axis=1, names=["ticker", "field"]).swaplevel(0, 1, axis=1)
    panel = panel.reindex(columns=pd.MultiIndex.from_product([FIELDS, list(tickers)], names=["field", "ticker"]))
    return panel.astype(np.float64), filled


def load_market(tickers: Sequence[str], start, end, *, source: str = "synthetic",
                csv_dir: str | Path | None = None, cache_dir: str | Path | None = None, seed: int = 0,
                history_days: int = 0, min_days: int = 2) -> MarketData:
    """Load, validate and align `tickers` over [start, end] plus up to `history_days` rows before."""
    tickers = [t.strip() for t in tickers if t and t.strip()]
    if not tickers:
        raise RLTraderError("no tickers given")
    if len(set(tickers)) != len(tickers):
        raise RLTraderError(f"duplicated ticker in {','.join(tickers)}")
    try:
        start_ts, end_ts = pd.Timestamp(start), pd.Timestamp(end)
    except ValueError as exc:
        raise RLTraderError(f"bad date: {exc}") from None
    if start_ts > end_ts:
        raise RLTraderError(f"start {start_ts.date()} is after end {end_ts.date()}")
    # Calendar days to cover `history_days` trading rows (holidays included), generously.
    fetch_start = start_ts - pd.Timedelta(days=int(history_days * 1.6) + 10) if history_days else start_ts
    if source == "csv":
        frames = _from_csv(tickers, csv_dir)
    elif source == "synthetic":
        frames = _from_synthetic(tickers, fetch_start, end_ts, seed)
    elif source == "yahoo":
        frames = _from_yahoo(tickers, fetch_start, end_ts, cache_dir)
    else:
        raise RLTraderError(f"unknown data source {source!r} (use one of {', '.join(SOURCES)})")
    for t in tickers:
        _check_series(frames[t], t)
        frames[t] = frames[t].loc[fetch_start:end_ts]
        if frames[t].empty:
            raise RLTraderError(f"{t} has no data between {start_ts.date()} and {end_ts.date()}")
    panel, filled = align(frames, tickers)
    in_period = int((panel.index >= start_ts).sum())
    if in_period < min_days:
        raise RLTraderError(f"{start_ts.date()}..{end_ts.date()} holds {in_period} trading days for "
                            f"{','.join(tickers)}; at least {min_days} are needed (feature warm-up / episode length)")
    first_in = int(panel.index.searchsorted(start_ts))
    panel = panel.iloc[max(0, first_in - history_days):]
    period_start = panel.index[panel.index.searchsorted(start_ts)]
    return MarketData(panel=panel, tickers=tuple(tickers), source=source,
                      fingerprint=fingerprint(panel, tickers), filled=filled, period_start=period_start)


# -- tensor cache (the v2 --cache-path) -----------------------------------------------------------
def save_panel_cache(data: MarketData, path: str | Path) -> Path:
    """Save the panel as plain tensors (loadable with weights_only=True), atomically."""
    import torch

    from rl_strategy.atomic import atomic_write_bytes

    payload = {"format": "rl-trader-panel/1", "tickers": list(data.tickers), "fields": list(FIELDS),
               "dates": torch.as_tensor(data.panel.index.as_unit("ns").asi8), "values": torch.as_tensor(data.panel.to_numpy()),
               "source": data.source, "fingerprint": data.fingerprint, "filled": dict(data.filled),
               "period_start": str(data.period_start.date())}
    return atomic_write_bytes(path, lambda fh: torch.save(payload, fh))


def load_panel_cache(path: str | Path, tickers: Sequence[str] | None = None) -> MarketData:
    import torch

    path = Path(path)
    if not path.is_file():
        raise RLTraderError(f"panel cache not found: {path}")
    try:
        p = torch.load(path, weights_only=True)
        index = pd.DatetimeIndex(p["dates"].numpy().astype("datetime64[ns]"), name="Date")
        columns = pd.MultiIndex.from_product([p["fields"], p["tickers"]], names=["field", "ticker"])
        panel = pd.DataFrame(p["values"].numpy(), index=index, columns=columns)
    except Exception as exc:
        raise RLTraderError(f"panel cache {path} cannot be read ({str(exc).splitlines()[0][:160]})") from None
    if fingerprint(panel, p["tickers"]) != p["fingerprint"]:
        raise RLTraderError(f"panel cache {path} failed its fingerprint check (corrupted or modified)")
    if tickers is not None and list(tickers) != list(p["tickers"]):
        raise RLTraderError(f"panel cache {path} holds {','.join(p['tickers'])}, not {','.join(tickers)}")
    return MarketData(panel=panel, tickers=tuple(p["tickers"]), source=f"cache:{p['source']}",
                      fingerprint=p["fingerprint"], filled=dict(p["filled"]),
                      period_start=pd.Timestamp(p["period_start"]))
