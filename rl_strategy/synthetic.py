"""The embedded default market: a seeded regime-switching generator fitted to real data.

A hidden two-state Markov chain (calm / stress) drives correlated daily log returns of SPY,
QQQ and IWM (regime-dependent mean and covariance); long stress spells give the volatility
clustering and the deep drawdowns of real markets. ^VIX follows a log AR(1) around its
regime's level and falls when SPY rises. Opens split each day's return into an overnight gap
and an intraday move with the fitted share of variance. Parameters: `synthetic_params.py`,
fitted by `python -m rl_strategy.fit_synthetic`.

One path per seed is simulated from a fixed origin over a fixed horizon and then sliced, so any
date range, ticker subset or period split (train 2015-2019, test 2020-2024) of a seed are
consistent parts of one market.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from rl_strategy.errors import RLTraderError
from rl_strategy.synthetic_params import PARAMS

ORIGIN, HORIZON = pd.Timestamp("1990-01-01"), pd.Timestamp("2040-12-31")
SUPPORTED_TICKERS: tuple[str, ...] = (*PARAMS["assets"], "^VIX")


def _simulate(seed: int) -> dict[str, pd.DataFrame]:
    dates = pd.bdate_range(ORIGIN, HORIZON, name="Date")
    T, n = len(dates), len(PARAMS["assets"])
    rng = np.random.default_rng(seed)
    # Draw every random number up front in a fixed order: the path never depends on the request.
    u_regime = rng.random(T)
    z = rng.standard_normal((T, n))
    z_gap = rng.standard_normal((T, n))
    z_range = np.abs(rng.standard_normal((T, n, 2)))
    z_vix = rng.standard_normal(T)
    z_volume = rng.standard_normal((T, n))

    trans = np.asarray(PARAMS["transition"])
    regimes = PARAMS["regimes"]
    state = np.zeros(T, dtype=np.int64)
    for t in range(1, T):
        state[t] = int(u_regime[t] < trans[state[t - 1], 1])

    mean = np.array([r["mean"] for r in regimes])              # (2, n)
    chol = np.array([np.linalg.cholesky(r["cov"]) for r in regimes])  # (2, n, n)
    log_ret = mean[state] + np.einsum("tij,tj->ti", chol[state], z)
    log_ret[0] = 0.0
    sigma = np.sqrt(np.array([np.diag(r["cov"]) for r in regimes]))[state]  # (T, n)

    k = np.asarray(PARAMS["overnight_share"])
    gap = k * log_ret + np.sqrt(k * (1 - k)) * sigma * z_gap
    log_close = np.log(PARAMS["start_prices"]) + np.cumsum(log_ret, axis=0)
    close = np.exp(log_close)
    prev_close = np.exp(np.vstack([log_close[:1], log_close[:-1]]))
    open_ = prev_close * np.exp(gap)
    intraday_sigma = np.sqrt(1 - k) * sigma
    high = np.maximum(open_, close) * np.exp(0.5 * intraday_sigma * z_range[..., 0])
    low = np.minimum(open_, close) * np.exp(-0.5 * intraday_sigma * z_range[..., 1])
    volume = np.asarray(PARAMS["volume_level"]) * np.exp(0.3 * z_volume + 0.5 * state[:, None])

    level = np.array([r["vix_level"] for r in regimes])[state]
    phi = np.array([r["vix_phi"] for r in regimes])[state]
    beta = np.array([r["vix_beta"] for r in regimes])[state]
    vsig = np.array([r["vix_sigma"] for r in regimes])[state]
    spy_shock = z[:, 0]
    dev = np.zeros(T)
    for t in range(1, T):
        dev[t] = phi[t] * dev[t - 1] + beta[t] * spy_shock[t] + vsig[t] * z_vix[t]
    vix = np.exp(level + dev)

    out = {}
    for j, ticker in enumerate(PARAMS["assets"]):
        out[ticker] = pd.DataFrame({"Open": open_[:, j], "High": high[:, j], "Low": low[:, j],
                                    "Close": close[:, j], "Volume": volume[:, j]}, index=dates)
    out["^VIX"] = pd.DataFrame({"Open": vix, "High": vix, "Low": vix, "Close": vix, "Volume": 0.0}, index=dates)
    return out


_CACHE: dict[int, dict[str, pd.DataFrame]] = {}


def generate_market(tickers: Sequence[str], start: pd.Timestamp, end: pd.Timestamp, seed: int) -> dict[str, pd.DataFrame]:
    """OHLCV frames (business days in [start, end]) for the requested synthetic tickers."""
    unknown = [t for t in tickers if t not in SUPPORTED_TICKERS]
    if unknown:
        raise RLTraderError(f"the synthetic market has no {', '.join(unknown)} (it has {', '.join(SUPPORTED_TICKERS)})")
    if pd.Timestamp(start) < ORIGIN or pd.Timestamp(end) > HORIZON:
        raise RLTraderError(f"the synthetic market covers {ORIGIN.date()}..{HORIZON.date()}")
    if seed not in _CACHE:
        _CACHE.clear()
        _CACHE[seed] = _simulate(seed)
    return {t: _CACHE[seed][t].loc[start:end].copy() for t in tickers}
