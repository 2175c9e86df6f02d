"""The embedded default market: a seeded generator of daily SPY, QQQ, IWM, TLT, GLD, ^VIX bars.

Model (parameters in `synthetic_params.py`, fitted to real 2005-2024 data by
`python tools/fit_synthetic.py`):

* a hidden two-state Markov chain (calm / stress) sets each day's mean, volatility and
  correlations of the assets' daily log returns (Cholesky-correlated normal shocks);
* inside a regime a GJR-GARCH(1,1) multiplier on the variance, driven by SPY's shock, gives
  day-to-day volatility clustering and the leverage effect (down days raise volatility more);
* log ^VIX is a line in the log of SPY's exponentially weighted volatility plus a mean-reverting
  deviation that moves against SPY's shock of the day and takes in volatility jumps gradually;
* Opens split the close-to-close return into an overnight gap and an intraday move with the
  fitted share of variance; High/Low extend beyond open/close by half-normal intraday excursions;
  volume is log-normal around the asset's median, higher when volatility is high (^VIX: 0).

One path per seed is simulated from a fixed origin to a fixed horizon, every ticker always, and
then sliced, so any date range or ticker subset of a seed is part of the same market: the train
period 2015-2019 and test period 2020-2024 of a seed are consecutive. Each asset draws from its
own random stream, so adding an asset to the parameters leaves the others' paths unchanged.
"""

from __future__ import annotations

import math
import operator
import zlib
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import pandas as pd

from rl_strategy.errors import RLTraderError
from rl_strategy.synthetic_params import PARAMS

ORIGIN, HORIZON = pd.Timestamp("1990-01-01"), pd.Timestamp("2040-12-31")
BURN_IN = 500          # days simulated before ORIGIN and dropped, so the origin's state is typical
VIX = "^VIX"
SUPPORTED_TICKERS: tuple[str, ...] = (*PARAMS["assets"], VIX)
TRADING_DAYS = 252
MAX_GARCH = 25.0       # cap on the variance multiplier (5x the regime's volatility): keeps paths finite
LOG_VIX_BOUNDS = (float(np.log(5.0)), float(np.log(150.0)))
COLUMNS = ["Open", "High", "Low", "Close", "Volume"]


def _stream(seed: int, name: str) -> np.random.Generator:
    """An independent random stream per (seed, purpose): no draw depends on another's count."""
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def _regime_path(uniform: np.ndarray, transition: Sequence[Sequence[float]]) -> np.ndarray:
    """0 = calm, 1 = stress; the first day is drawn from the chain's stationary distribution."""
    p_stress = (float(transition[0][1]), float(transition[1][1]))
    stationary = p_stress[0] / (p_stress[0] + 1.0 - p_stress[1])
    states = np.empty(len(uniform), dtype=np.int64)
    state = int(uniform[0] < stationary)
    for t, u in enumerate(uniform.tolist()):
        if t:
            state = int(u < p_stress[state])
        states[t] = state
    return states


def _garch_path(shock: np.ndarray, garch: dict[str, float]) -> np.ndarray:
    """Variance multipliers g_0..g_n (long-run mean 1); g_{t+1} reacts to day t's shock."""
    alpha, gamma, beta = garch["alpha"], garch["gamma"], garch["beta"]
    omega = 1.0 - alpha - gamma / 2 - beta
    g = np.empty(len(shock) + 1)
    current = g[0] = 1.0
    for t, z in enumerate(shock.tolist()):
        x2 = current * z * z
        current = min(omega + (alpha + gamma * (z < 0.0)) * x2 + beta * current, MAX_GARCH)
        g[t + 1] = current
    return g


def _log_vix_path(spy_returns: np.ndarray, shock: np.ndarray, noise: np.ndarray, vix: dict[str, float],
                  start_var: float) -> np.ndarray:
    """log VIX = line in log(SPY's EWMA volatility) + an AR(1) deviation moved against SPY's shock."""
    weight = 1.0 - 0.5 ** (1.0 / vix["ewma_halflife"])
    const, slope = vix["level_const"], vix["level_vol_loading"]
    phi, loading, spread = vix["phi"], vix["shock_loading"], vix["noise"]
    line_loading = vix["line_change_loading"]
    lo, hi = LOG_VIX_BOUNDS
    out = np.empty(len(spy_returns))
    var, dev = start_var, 0.0
    line = const + slope * 0.5 * math.log(TRADING_DAYS * var)
    for t, (r, z, eta) in enumerate(zip(spy_returns.tolist(), shock.tolist(), noise.tolist(), strict=True)):
        var += weight * (r * r - var)
        new_line = const + slope * 0.5 * math.log(TRADING_DAYS * var)
        dev = phi * dev + loading * z + line_loading * (new_line - line) + spread * eta
        line = new_line
        out[t] = min(max(line + dev, lo), hi)
    return out


def _bars(log_prev: np.ndarray, log_ret: np.ndarray, sigma: np.ndarray, shape: dict[str, float],
          rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Open/High/Low/Close from the previous close, the day's log return and its volatility.

    The gap k*r + sqrt(k(1-k))*sigma*z has variance k*sigma^2 and is uncorrelated with the
    intraday move r - gap (variance (1-k)*sigma^2): the fitted overnight share k of variance.
    """
    z_gap, z_high, z_low = rng.standard_normal((3, len(log_ret)))
    k = shape["overnight_share"]
    log_open = log_prev + k * log_ret + np.sqrt(k * (1 - k)) * sigma * z_gap
    log_close = log_prev + log_ret
    intraday = np.sqrt(1 - k) * sigma
    log_high = np.maximum(log_open, log_close) + shape["high_scale"] * intraday * np.abs(z_high)
    log_low = np.minimum(log_open, log_close) - shape["low_scale"] * intraday * np.abs(z_low)
    return {"Open": np.exp(log_open), "High": np.exp(log_high), "Low": np.exp(log_low),
            "Close": np.exp(log_close)}


def simulate(seed: int, params: dict = PARAMS) -> dict[str, pd.DataFrame]:
    """The whole path of one seed, ORIGIN..HORIZON, for every asset in `params` and ^VIX."""
    dates = pd.bdate_range(ORIGIN, HORIZON, name="Date")
    n = BURN_IN + len(dates)
    assets = list(params["assets"])
    calm, stress = params["regimes"]["calm"], params["regimes"]["stress"]

    states = _regime_path(_stream(seed, "regime").random(n), params["transition"])
    z = np.column_stack([_stream(seed, f"{t}/returns").standard_normal(n) for t in assets])
    # Correlate with each regime's Cholesky factor, keep the one of the day's regime.
    shocks = np.where(states[:, None] == 1, z @ np.linalg.cholesky(stress["corr"]).T,
                      z @ np.linalg.cholesky(calm["corr"]).T)
    g = _garch_path(shocks[:, 0], params["garch"])
    mean = np.array([calm["mean"], stress["mean"]])[states]
    sigma = np.array([calm["vol"], stress["vol"]])[states] * np.sqrt(g[:-1])[:, None]
    log_ret = mean + sigma * shocks
    # SPY's conditional annualised volatility for tomorrow, known at today's close (drives volume).
    spy_vol = np.where(states == 1, stress["vol"][0], calm["vol"][0])
    log_vol = np.log(spy_vol * np.sqrt(TRADING_DAYS * g[1:]))

    keep = slice(BURN_IN, None)
    out = {}
    for j, ticker in enumerate(assets):
        spec = params["bars"][ticker]
        log_prev = np.log(spec["start_price"]) + np.concatenate([[0.0], np.cumsum(log_ret[keep, j])[:-1]])
        rng = _stream(seed, f"{ticker}/bars")
        bars = _bars(log_prev, log_ret[keep, j], sigma[keep, j], spec, rng)
        bars["Volume"] = spec["volume"] * np.exp(
            spec["volume_vol_elasticity"] * (log_vol[keep] - np.log(params["volume_ref_vol"]))
            + spec["volume_noise"] * rng.standard_normal(len(dates)))
        out[ticker] = pd.DataFrame(bars, index=dates, columns=COLUMNS, dtype=np.float64)

    vix = params["vix"]
    log_vix = _log_vix_path(log_ret[:, 0], shocks[:, 0], _stream(seed, "vix").standard_normal(n), vix,
                            start_var=float(calm["vol"][0]) ** 2)
    vix_bars = _bars(log_vix[BURN_IN - 1:-1], np.diff(log_vix)[BURN_IN - 1:],
                     np.full(len(dates), vix["daily_vol"]), vix, _stream(seed, f"{VIX}/bars"))
    vix_bars["Volume"] = np.zeros(len(dates))
    out[VIX] = pd.DataFrame(vix_bars, index=dates, columns=COLUMNS, dtype=np.float64)
    return out


@lru_cache(maxsize=8)
def _cached(seed: int) -> dict[str, pd.DataFrame]:
    return simulate(seed)


def generate_market(tickers: Sequence[str], start: pd.Timestamp, end: pd.Timestamp,
                    seed: int) -> dict[str, pd.DataFrame]:
    """Daily OHLCV frames (business days in [start, end]) of the requested synthetic tickers.

    The data do not depend on the range or on which tickers are asked for: one fixed path per seed.
    """
    unknown = [t for t in tickers if t not in SUPPORTED_TICKERS]
    if unknown:
        raise RLTraderError(f"the synthetic market has no {', '.join(unknown)} "
                            f"(it has {', '.join(SUPPORTED_TICKERS)})")
    try:
        seed = operator.index(seed)
    except TypeError:
        raise RLTraderError(f"the synthetic market's seed must be an integer, got {seed!r}") from None
    if seed < 0:
        raise RLTraderError(f"the synthetic market's seed must be >= 0, got {seed}")
    start, end = pd.Timestamp(start), pd.Timestamp(end)
    if start > end:
        raise RLTraderError(f"start {start.date()} is after end {end.date()}")
    if end < ORIGIN or end > HORIZON:
        raise RLTraderError(f"the synthetic market covers {ORIGIN.date()}..{HORIZON.date()}; "
                            f"{end.date()} is outside it")
    market = _cached(seed)
    return {t: market[t].loc[start:end].copy() for t in tickers}
