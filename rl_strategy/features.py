"""Market features and the observation layout, shared by the environment and the strategy.

Features are computed once over the whole panel from closing prices alone (so a researcher with
only close panels can run the policy): the traded assets' closes and, for some sets, the closes
of *signal* tickers that are loaded with the universe on its calendar but never traded. Row t
uses closes up to day t only, and scaling uses fixed constants, never statistics of the sample,
so no future information can enter an observation. Every value is clipped to [-CLIP, CLIP]; the
rows before a set's warm-up hold 0 (no decision is taken on them).

`env.features` names the sets, in observation order (default `[core]`, the v2 observation).
The scalings put typical values in about [-3, 3]; "1-99%" is the range of 2005-2024 real data:

| set | slots | signals | warm-up | value = (raw - centre) / scale |
|---|---|---|---|---|
| core | 8 per asset | | 60 | ret_{1,5,20,60}d: log return / (1% * sqrt(h)); vol_{20,60}d: (annualised realised vol - 20%) / 10%; ma_20d, ma_50d: close / moving average - 1, / 5% and / 10% |
| vix | 4 | ^VIX | 60 | level: ln(VIX / 20) / 0.3 (1-99%: -2.4..3.5); chg_5d, chg_20d: ln change / (8% * sqrt(h)) (-1.9..2.5); vs_mean_60d: VIX / its 60-day mean - 1, / 20% (-1.5..4.7) |
| rates | 3 | ^TNX | 60 | level: (10-year yield in % - 3) / 1.5 (1-99%: -1.6..1.4); chg_20d, chg_60d: change in points / 0.25 and / 0.5 (-2.6..2.4) |
| cross_asset | 3 per signal | TLT, GLD | 20 | ret_5d, ret_20d and vol_20d of the signal, scaled as core's (-3..2.7) |
| trend | 2 per asset | | 200 | above_ma200: +1 above the 200-day average, -1 below; mom_rank_126d: rank of the 126-day return among the traded assets, -1 (weakest) .. 1 (strongest) |
| calendar | 3 | | 1 | month_sin, month_cos: sin and cos of 2 pi (month - 1) / 12; turn_of_month: 1 on a month's last weekday and its first three weekdays, else 0 (the date alone decides: exchange holidays are not looked up) |

Slot names are `<asset>:<feature>` for per-asset features, `<set>:<feature>` for the others and
`cross_asset:<ticker>:<feature>`. The observation is:

    [market features of day t, set after set]  see above (core: asset-major, n_assets x 8)
    [portfolio weights: CASH, *assets]        n_assets + 1   (drifted, at day t's close)
    [drawdown: value / peak - 1]              1              (x5, in [-5, 0])
    [previous action, one-hot]                n_actions
    [zero padding up to obs_dim]

For the v2 universe and `[core]` that is 24 + 4 + 1 + 16 = 45 values, padded to 64. `env.obs_dim`
is a minimum: a layout that needs more values grows the observation to exactly that size, and
the checkpoint records the size used (`spec.obs_dim`, `spec.layout`). The drawdown's peak is the
episode's running peak (`env.drawdown_window` 0, the default), or the peak of the last
`drawdown_window` closes, today's included, which means the same in a 256-day training episode
and a 5-year backtest. Values before the episode's first decision count as 1 (the starting value).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from rl_strategy.errors import RLTraderError

#: Rows of history the core set (the v2 observation) needs before its first valid value.
WARMUP = 60
#: Every feature is clipped to this range after its fixed scaling.
CLIP = 5.0
DEFAULT_FEATURES: tuple[str, ...] = ("core",)

_RETURN_HORIZONS = (1, 5, 20, 60)
ASSET_FEATURES: tuple[str, ...] = (
    "ret_1d", "ret_5d", "ret_20d", "ret_60d",  # log return / (1% * sqrt(horizon))
    "vol_20d", "vol_60d",                      # (annualised realised vol - 20%) / 10%
    "ma_20d", "ma_50d",                        # close / moving average - 1, / 5% and / 10%
)
VIX, TNX = "^VIX", "^TNX"
CROSS_ASSETS: tuple[str, ...] = ("TLT", "GLD")
CROSS_FEATURES: tuple[str, ...] = ("ret_5d", "ret_20d", "vol_20d")
TREND_FEATURES: tuple[str, ...] = ("above_ma200", "mom_rank_126d")


def _log_return(logc: pd.DataFrame, h: int) -> pd.DataFrame:
    return logc.diff(h) / (0.01 * np.sqrt(h))


def _volatility(daily: pd.DataFrame, w: int) -> pd.DataFrame:
    return (daily.rolling(w).std() * np.sqrt(252.0) - 0.2) / 0.1


def _asset_major(cols: list[pd.DataFrame]) -> np.ndarray:
    """(T, n_features, n_assets) -> (T, n_assets, n_features) -> asset-major flat."""
    stacked = np.stack([c.to_numpy(dtype=np.float64) for c in cols], axis=1)
    return stacked.transpose(0, 2, 1).reshape(len(cols[0]), -1)


def _core(close: pd.DataFrame, _: pd.DataFrame) -> np.ndarray:
    logc = np.log(close)
    daily = logc.diff()
    cols = [_log_return(logc, h) for h in _RETURN_HORIZONS]
    cols += [_volatility(daily, w) for w in (20, 60)]
    cols.append((close / close.rolling(20).mean() - 1.0) / 0.05)
    cols.append((close / close.rolling(50).mean() - 1.0) / 0.10)
    return _asset_major(cols)


def _vix(_: pd.DataFrame, signals: pd.DataFrame) -> np.ndarray:
    vix = signals[VIX]
    logv = np.log(vix)
    cols = [(logv - np.log(20.0)) / 0.3, logv.diff(5) / (0.08 * np.sqrt(5)), logv.diff(20) / (0.08 * np.sqrt(20)),
            (vix / vix.rolling(60).mean() - 1.0) / 0.2]
    return np.column_stack([c.to_numpy(np.float64) for c in cols])


def _rates(_: pd.DataFrame, signals: pd.DataFrame) -> np.ndarray:
    tnx = signals[TNX]
    cols = [(tnx - 3.0) / 1.5, tnx.diff(20) / 0.25, tnx.diff(60) / 0.5]
    return np.column_stack([c.to_numpy(np.float64) for c in cols])


def _cross_asset(_: pd.DataFrame, signals: pd.DataFrame) -> np.ndarray:
    logc = np.log(signals[list(CROSS_ASSETS)])
    return _asset_major([_log_return(logc, 5), _log_return(logc, 20), _volatility(logc.diff(), 20)])


def _trend(close: pd.DataFrame, _: pd.DataFrame) -> np.ndarray:
    above = np.sign(close - close.rolling(200).mean())
    n = close.shape[1]
    rank = np.log(close).diff(126).rank(axis=1, method="average")  # 1 = weakest; NaN in the warm-up
    scaled = (rank - 1.0) / (n - 1) * 2.0 - 1.0 if n > 1 else rank * 0.0
    return _asset_major([above, scaled])


def _calendar(close: pd.DataFrame, _: pd.DataFrame) -> np.ndarray:
    days = close.index.to_numpy().astype("datetime64[D]")
    months = days.astype("datetime64[M]")
    angle = 2.0 * np.pi * (close.index.month.to_numpy() - 1) / 12.0
    weekday_of_month = np.busday_count(months.astype("datetime64[D]"), days) + 1
    last_weekday = np.busday_offset(days, 1, roll="forward").astype("datetime64[M]") != months
    turn = ((weekday_of_month <= 3) | last_weekday).astype(np.float64)
    return np.column_stack([np.sin(angle), np.cos(angle), turn])


@dataclass(frozen=True)
class FeatureSet:
    """One named block of the observation's market features (see the module docstring)."""

    tickers: tuple[str, ...]   # signal tickers it reads: loaded with the universe, never traded
    warmup: int                # rows of history before its first valid value
    names: Callable[[Sequence[str]], list[str]]                   # slot names, given the traded assets
    compute: Callable[[pd.DataFrame, pd.DataFrame], np.ndarray]  # (traded closes, its signals) -> (T, slots)


FEATURE_SETS: dict[str, FeatureSet] = {
    "core": FeatureSet((), WARMUP, lambda assets: [f"{a}:{f}" for a in assets for f in ASSET_FEATURES], _core),
    "vix": FeatureSet((VIX,), 60, lambda _: ["vix:level", "vix:chg_5d", "vix:chg_20d", "vix:vs_mean_60d"], _vix),
    "rates": FeatureSet((TNX,), 60, lambda _: ["rates:level", "rates:chg_20d", "rates:chg_60d"], _rates),
    "cross_asset": FeatureSet(CROSS_ASSETS, 20, lambda _: [f"cross_asset:{t}:{f}" for t in CROSS_ASSETS
                                                           for f in CROSS_FEATURES], _cross_asset),
    "trend": FeatureSet((), 200, lambda assets: [f"{a}:{f}" for a in assets for f in TREND_FEATURES], _trend),
    "calendar": FeatureSet((), 1, lambda _: ["calendar:month_sin", "calendar:month_cos", "calendar:turn_of_month"],
                           _calendar),
}


def feature_warmup(sets: Sequence[str]) -> int:
    """Rows of history the sets need before the first decision (at least 1: the close before it)."""
    return max([1, *(FEATURE_SETS[s].warmup for s in sets)])


def signal_tickers(sets: Sequence[str], assets: Sequence[str]) -> dict[str, str]:
    """The signal tickers the sets read that are not traded, each with the first set that reads it."""
    out: dict[str, str] = {}
    for s in sets:
        for t in FEATURE_SETS[s].tickers:
            if t not in assets:
                out.setdefault(t, s)
    return out


def market_features(close: pd.DataFrame, sets: Sequence[str] = DEFAULT_FEATURES,
                    signals: pd.DataFrame | None = None) -> np.ndarray:
    """Per-day market features: (T, len(feature_names(sets, assets))) float64, set after set.

    `signals` holds the closes of the signal tickers (dates x tickers, on `close`'s dates); a
    traded asset a set reads is taken from `close`. Rows before a set's warm-up hold 0.
    """
    blocks = []
    for name in sets:
        fs = FEATURE_SETS[name]
        missing = [t for t in fs.tickers if t not in close.columns and (signals is None or t not in signals.columns)]
        if missing:
            raise RLTraderError(f"feature set {name} needs the closes of {', '.join(missing)} (pass them as signals)")
        read = pd.DataFrame({t: close[t] if t in close.columns else signals[t] for t in fs.tickers}, index=close.index)
        block = np.clip(np.nan_to_num(fs.compute(close, read), nan=0.0), -CLIP, CLIP)
        block[:fs.warmup] = 0.0
        blocks.append(block)
    return np.concatenate(blocks, axis=1)


def feature_names(sets: Sequence[str], assets: Sequence[str]) -> list[str]:
    """Names of the market-feature slots, in the order `market_features` gives them."""
    return [n for s in sets for n in FEATURE_SETS[s].names(assets)]


def observation_layout(assets: tuple[str, ...] | list[str], action_names: tuple[str, ...] | list[str],
                       obs_dim: int, sets: Sequence[str] = DEFAULT_FEATURES) -> list[str]:
    """Names of the observation slots, in order (stored in checkpoints and reports): obs_dim slots,
    or exactly as many as the layout needs when that is more (obs_dim is a minimum)."""
    names = feature_names(sets, assets)
    names += ["weight:CASH"] + [f"weight:{a}" for a in assets]
    names += ["drawdown"]
    names += [f"prev_action:{a}" for a in action_names]
    return names + ["pad"] * (obs_dim - len(names))
