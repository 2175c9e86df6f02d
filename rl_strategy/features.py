"""Market features and the observation layout, shared by the environment and the strategy.

Features are computed once over the whole panel from closing prices alone (so a researcher
with only a close panel can run the policy). Row t uses closes up to day t only, and
normalisation uses fixed constants, never statistics of the sample, so no future information
can enter an observation. The observation is:

    [market features of day t, asset-major]   n_assets x 8
    [portfolio weights: CASH, *assets]        n_assets + 1   (drifted, at day t's close)
    [drawdown: value / peak - 1]              1              (x5, in [-5, 0])
    [previous action, one-hot]                n_actions
    [zero padding up to obs_dim]

For the v2 universe that is 24 + 4 + 1 + 16 = 45 values, padded to 64. The drawdown's peak is the
episode's running peak (`env.drawdown_window` 0, the default), or the peak of the last
`drawdown_window` closes, today's included, which means the same in a 256-day training episode
and a 5-year backtest. Values before the episode's first decision count as 1 (the starting value).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from rl_strategy.errors import RLTraderError

#: Rows of history a feature needs before its first valid value (the longest window).
WARMUP = 60
#: Every feature is clipped to this range after its fixed scaling.
CLIP = 5.0

_RETURN_HORIZONS = (1, 5, 20, 60)
ASSET_FEATURES: tuple[str, ...] = (
    "ret_1d", "ret_5d", "ret_20d", "ret_60d",  # log return / (1% * sqrt(horizon))
    "vol_20d", "vol_60d",                      # (annualised realised vol - 20%) / 10%
    "ma_20d", "ma_50d",                        # close / moving average - 1, / 5% and / 10%
)


def market_features(close: pd.DataFrame) -> np.ndarray:
    """Per-day, per-asset features: (T, n_assets * len(ASSET_FEATURES)) float64, asset-major.

    Rows before WARMUP hold NaN-free placeholders (0); callers never decide on them.
    """
    logc = np.log(close)
    daily = logc.diff()
    cols: list[pd.DataFrame] = []
    for h in _RETURN_HORIZONS:
        cols.append(logc.diff(h) / (0.01 * np.sqrt(h)))
    for w in (20, 60):
        vol = daily.rolling(w).std() * np.sqrt(252.0)
        cols.append((vol - 0.2) / 0.1)
    cols.append((close / close.rolling(20).mean() - 1.0) / 0.05)
    cols.append((close / close.rolling(50).mean() - 1.0) / 0.10)

    # (T, n_features, n_assets) -> (T, n_assets, n_features) -> asset-major flat
    stacked = np.stack([c.to_numpy(dtype=np.float64) for c in cols], axis=1)
    flat = stacked.transpose(0, 2, 1).reshape(len(close), -1)
    flat = np.clip(np.nan_to_num(flat, nan=0.0), -CLIP, CLIP)
    flat[:WARMUP] = 0.0
    return flat


def observation_layout(assets: tuple[str, ...] | list[str], action_names: tuple[str, ...] | list[str],
                       obs_dim: int) -> list[str]:
    """Names of the obs_dim observation slots, in order (stored in checkpoints and reports)."""
    names = [f"{a}:{f}" for a in assets for f in ASSET_FEATURES]
    names += ["weight:CASH"] + [f"weight:{a}" for a in assets]
    names += ["drawdown"]
    names += [f"prev_action:{a}" for a in action_names]
    if len(names) > obs_dim:
        raise RLTraderError(
            f"observation needs {len(names)} values for {len(assets)} assets and "
            f"{len(action_names)} actions but obs_dim is {obs_dim}: raise env.obs_dim to at least {len(names)}")
    return names + ["pad"] * (obs_dim - len(names))


def n_market_features(n_assets: int) -> int:
    return n_assets * len(ASSET_FEATURES)
