"""Developer tool: fit the synthetic market's parameters to real data (run once; the numbers are committed).

    python tools/fit_synthetic.py --market-dir ../shared/data/market          # print params
    python tools/fit_synthetic.py --market-dir ../shared/data/market --write  # overwrite them
    python tools/fit_synthetic.py --market-dir ../shared/data/market --table --seeds 100
    python tools/fit_synthetic.py --assets SPY QQQ IWM --write                # fewer assets

Method (simple on purpose: counts, sample moments, least-squares lines, one grid search), on the
days 2005-2024 where all the assets and ^VIX trade:

1. Regimes: a day is `stress` when SPY's trailing 60-day volatility (known the evening before)
   is above its 80th percentile, else `calm`. Transition probabilities are counted from the
   day-to-day label changes; per regime: mean, volatility and correlations of daily log returns.
2. Volatility clustering inside a regime: SPY's return standardised by its regime's mean and
   volatility follows a GJR-GARCH(1,1) with unit long-run variance; alpha, gamma (the extra
   reaction to down days) and beta maximise the Gaussian quasi-likelihood on a grid.
3. ^VIX: a least-squares line of log VIX on the log of SPY's exponentially weighted volatility
   (the half-life that fits best); the deviation from the line is an AR(1) with loadings on
   SPY's standardised shock of the day and on the line's change (second least squares); the
   residual's spread is the noise.
4. Bars: the overnight share of variance, the High/Low excursions beyond the open and close (in
   units of the intraday volatility) and volume (median level, elasticity to volatility, noise).
"""

from __future__ import annotations

import argparse
import pprint
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

FIT_START, FIT_END = "2005-01-01", "2024-12-31"
DEFAULT_ASSETS = ("SPY", "QQQ", "IWM", "TLT", "GLD")
VIX = "^VIX"
STRESS_QUANTILE = 0.8
TRAILING_DAYS = 60
TRADING_DAYS = 252
# Price on the generator's first day (1990): any plausible level; not fitted.
START_PRICES = {"SPY": 100.0, "QQQ": 50.0, "IWM": 60.0, "TLT": 50.0, "GLD": 40.0}
HALF_NORMAL_MEAN = float(np.sqrt(2 / np.pi))
PARAMS_FILE = Path(__file__).resolve().parents[1] / "rl_strategy" / "synthetic_params.py"


# ---------------------------------------------------------------------------- data
def read_bars(market_dir: Path, tickers: Sequence[str]) -> dict[str, pd.DataFrame]:
    """yfinance CSVs cut to the fit window and to the days where every ticker trades."""
    frames = {t: pd.read_csv(Path(market_dir) / f"{t}.csv", index_col=0, parse_dates=True)
              .loc[FIT_START:FIT_END] for t in tickers}
    common = frames[tickers[0]].index
    for frame in frames.values():
        common = common.intersection(frame.index)
    return {t: frame.loc[common].astype(float) for t, frame in frames.items()}


# ---------------------------------------------------------------------------- fit steps
def label_regimes(spy_returns: pd.Series) -> np.ndarray:
    """1 = stress (trailing 60-day volatility, known before the day, above its 80th pct), 0 = calm."""
    trailing = spy_returns.rolling(TRAILING_DAYS).std().shift(1)
    return (trailing > trailing.quantile(STRESS_QUANTILE)).to_numpy(dtype=np.int64)


def fit_transition(states: np.ndarray) -> np.ndarray:
    """Markov transition matrix counted from consecutive labels (row: today, column: tomorrow)."""
    counts = np.zeros((2, 2))
    np.add.at(counts, (states[:-1], states[1:]), 1)
    return counts / counts.sum(axis=1, keepdims=True)


def fit_regime_moments(returns: np.ndarray, states: np.ndarray) -> dict[str, dict]:
    """Per-regime mean, volatility and correlation matrix of daily log returns."""
    out = {}
    for name, s in (("calm", 0), ("stress", 1)):
        r = returns[states == s]
        out[name] = {"mean": r.mean(axis=0), "vol": r.std(axis=0, ddof=1),
                     "corr": np.atleast_2d(np.corrcoef(r, rowvar=False))}
    return out


def fit_garch(u: np.ndarray) -> dict[str, float]:
    """GJR-GARCH(1,1) with variance targeting, quasi-likelihood maximised on a coarse-then-fine grid."""
    def best(alphas: np.ndarray, gammas: np.ndarray, betas: np.ndarray) -> tuple[float, float, float]:
        a, g, b = (x.ravel() for x in np.meshgrid(alphas, gammas, betas, indexing="ij"))
        keep = (a >= 0) & (g >= 0) & (b >= 0) & (a + g / 2 + b < 0.995)
        a, g, b = a[keep], g[keep], b[keep]
        loglik = _loglik(u, a, g, b)
        i = int(np.argmax(loglik))
        return float(a[i]), float(g[i]), float(b[i])

    a, g, b = best(np.arange(0, 0.21, 0.02), np.arange(0, 0.41, 0.04), np.arange(0.5, 0.996, 0.02))
    a, g, b = best(a + np.arange(-0.02, 0.021, 0.004), g + np.arange(-0.04, 0.041, 0.008),
                   b + np.arange(-0.02, 0.021, 0.004))
    return {"alpha": a, "gamma": g, "beta": b}


def _loglik(u: np.ndarray, alpha: np.ndarray, gamma: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """Gaussian log-likelihood of u under each (alpha, gamma, beta), without storing the paths."""
    omega = 1.0 - alpha - gamma / 2 - beta
    g = np.ones(alpha.shape)
    loglik = np.zeros(alpha.shape)
    for x in u:
        loglik -= 0.5 * (np.log(g) + x * x / g)
        g = omega + (alpha + gamma * (x < 0)) * x * x + beta * g
    return loglik


def garch_path(u: np.ndarray, garch: dict[str, float]) -> np.ndarray:
    """g_0..g_T for a single parameter set (g_{t+1} is known at the close of day t)."""
    omega = 1.0 - garch["alpha"] - garch["gamma"] / 2 - garch["beta"]
    g = np.ones(len(u) + 1)
    for t, x in enumerate(u):
        g[t + 1] = omega + (garch["alpha"] + garch["gamma"] * (x < 0)) * x * x + garch["beta"] * g[t]
    return g


def ewma_log_vol(returns: np.ndarray, halflife: float, start_var: float) -> np.ndarray:
    """log of the annualised exponentially weighted volatility of daily returns (same in the generator)."""
    weight = 1.0 - 0.5 ** (1.0 / halflife)
    out = np.empty(len(returns))
    var = start_var
    for t, x in enumerate(returns.tolist()):
        var += weight * (x * x - var)
        out[t] = var
    return 0.5 * np.log(TRADING_DAYS * out)


def fit_vix(log_vix: np.ndarray, spy_returns: np.ndarray, shock: np.ndarray,
            halflives: Sequence[float] = (3, 5, 7, 10, 15, 20, 30, 40)) -> dict[str, float]:
    """log VIX = level_const + level_vol_loading * log(SPY's EWMA volatility) + x, x an AR(1).

    The half-life is the one whose EWMA volatility best explains log VIX (least squares on
    levels). The deviation follows (second least squares)
        x_t = phi x_{t-1} + shock_loading z_t + line_change_loading (line_t - line_{t-1}) + noise eta_t
    with z_t SPY's standardised shock of the day; a negative line_change_loading means VIX takes
    in a jump of realised volatility gradually (an up day raises the EWMA but lowers VIX).
    """
    start_var = float(np.mean(spy_returns[:TRAILING_DAYS] ** 2))
    fits = []
    for halflife in halflives:
        log_vol = ewma_log_vol(spy_returns, halflife, start_var)
        slope, const = np.polyfit(log_vol, log_vix, 1)
        resid = log_vix - const - slope * log_vol
        fits.append((float(resid.var()), halflife, float(const), float(slope), resid))
    _, halflife, const, slope, dev = min(fits, key=lambda f: f[0])
    line_change = np.diff(log_vix - dev)
    x = np.column_stack([dev[:-1], shock[1:], line_change])
    coef, *_ = np.linalg.lstsq(x, dev[1:], rcond=None)
    noise = (dev[1:] - x @ coef).std(ddof=3)
    return {"ewma_halflife": float(halflife), "level_const": const, "level_vol_loading": slope,
            "phi": float(coef[0]), "shock_loading": float(coef[1]), "line_change_loading": float(coef[2]),
            "noise": float(noise)}


def fit_bar_shape(bars: pd.DataFrame) -> dict[str, float]:
    """Overnight share of daily variance, and High/Low excursions in intraday-volatility units.

    The generator draws each excursion as scale * intraday sigma * |N(0,1)|, so the scale is the
    mean excursion divided by sigma and by E|N(0,1)|.
    """
    close_to_close = np.log(bars["Close"]).diff()
    overnight = np.log(bars["Open"] / bars["Close"].shift(1))
    intraday_sigma = np.log(bars["Close"] / bars["Open"]).std()
    upper = np.log(bars["High"] / bars[["Open", "Close"]].max(axis=1)).clip(lower=0)
    lower = np.log(bars[["Open", "Close"]].min(axis=1) / bars["Low"]).clip(lower=0)
    return {"overnight_share": float(np.clip(overnight.var() / close_to_close.var(), 0.05, 0.9)),
            "high_scale": float(upper.mean() / intraday_sigma / HALF_NORMAL_MEAN),
            "low_scale": float(lower.mean() / intraday_sigma / HALF_NORMAL_MEAN)}


def fit_volume(volume: pd.Series, log_vol_state: pd.Series) -> dict[str, float]:
    """Median volume, elasticity of log volume to log volatility, day-to-day noise (log units)."""
    log_volume = np.log(volume.clip(lower=1.0))
    slope = np.polyfit(log_vol_state, log_volume, 1)[0]
    noise = (log_volume - log_volume.rolling(60).median()).std()
    return {"volume": float(volume.median()), "volume_vol_elasticity": float(slope),
            "volume_noise": float(noise)}


# ---------------------------------------------------------------------------- the whole fit
def fit(market_dir: Path, assets: Sequence[str] = DEFAULT_ASSETS) -> dict:
    """All generator parameters from the real bars in `market_dir` (SPY must come first)."""
    assets = list(assets)
    if assets[0] != "SPY":
        raise ValueError("SPY must be the first asset: it drives the regimes, GARCH and VIX")
    bars = read_bars(market_dir, [*assets, VIX])
    close = pd.DataFrame({t: bars[t]["Close"] for t in assets})
    returns = np.log(close).diff().iloc[1:]
    states_all = label_regimes(returns["SPY"])
    keep = slice(TRAILING_DAYS, None)  # the first days have no trailing volatility yet
    returns, states = returns.iloc[keep], states_all[keep]
    r = returns.to_numpy()

    moments = fit_regime_moments(r, states)
    mean = np.array([moments["calm"]["mean"], moments["stress"]["mean"]])
    vol = np.array([moments["calm"]["vol"], moments["stress"]["vol"]])
    u = (r[:, 0] - mean[states, 0]) / vol[states, 0]
    garch = fit_garch(u)
    g = garch_path(u, garch)
    shock = u / np.sqrt(g[:-1])
    # SPY's conditional annualised volatility for tomorrow, known at today's close.
    vol_state = vol[states, 0] * np.sqrt(TRADING_DAYS * g[1:])
    log_vix = np.log(bars[VIX]["Close"].loc[returns.index].to_numpy())
    vix = fit_vix(log_vix, r[:, 0], shock)
    vix.update(fit_bar_shape(bars[VIX]))
    vix["daily_vol"] = float(np.diff(log_vix).std())
    log_vol_state = pd.Series(np.log(vol_state), index=returns.index)
    per_asset = {}
    for t in assets:
        per_asset[t] = {"start_price": START_PRICES.get(t, 50.0), **fit_bar_shape(bars[t]),
                        **fit_volume(bars[t]["Volume"].loc[returns.index], log_vol_state)}
    params = {
        "fit_window": [FIT_START, FIT_END],
        "assets": assets,
        "transition": fit_transition(states).tolist(),
        "regimes": {name: {k: np.asarray(v).tolist() for k, v in m.items()} for name, m in moments.items()},
        "garch": garch,
        "vix": vix,
        "volume_ref_vol": float(np.exp(np.log(vol_state).mean())),
        "bars": per_asset,
    }
    return _rounded(params)


def _rounded(obj):
    """Six significant digits everywhere: readable, and far below the sampling error."""
    if isinstance(obj, dict):
        return {k: _rounded(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_rounded(v) for v in obj]
    if isinstance(obj, float | np.floating):
        return float(f"{float(obj):.6g}")
    return obj


def render_params(params: dict) -> str:
    """The text of synthetic_params.py: a docstring saying what the numbers are, then PARAMS."""
    assets = "/".join(params["assets"])
    start, end = params["fit_window"]
    return f'''"""Synthetic market parameters, fitted by `python tools/fit_synthetic.py` to real
{assets} and ^VIX daily bars {start}..{end}. Regenerate, do not edit.

transition[i][j]: P(regime j tomorrow | regime i today), 0 = calm, 1 = stress.
regimes.<name>: mean and vol of daily log returns, and their correlations (asset order).
garch: GJR-GARCH(1,1) of the variance multiplier g (long-run mean 1), driven by SPY's shock z:
    g' = (1 - alpha - gamma/2 - beta) + (alpha + gamma [z < 0]) g z^2 + beta g.
vix: log VIX = level_const + level_vol_loading log(SPY's EWMA annualised vol, ewma_halflife) + x,
    x' = phi x + shock_loading z + line_change_loading d(line) + noise eta; plus the bar shape.
bars.<ticker>: overnight share of variance, High/Low excursion scales (intraday sigma units),
    median volume, its elasticity to vol / volume_ref_vol and its log-normal noise.
"""

PARAMS = {pprint.pformat(params, width=100, sort_dicts=False)}
'''


# ---------------------------------------------------------------------------- real vs synthetic
def max_drawdown(close: pd.Series) -> float:
    return float((close / close.cummax() - 1).min())


def describe(close: pd.DataFrame, vix: pd.Series) -> dict[str, float]:
    """The statistics the README compares, for one panel of closes (columns: assets) and ^VIX."""
    r = np.log(close).diff().dropna()
    years = len(r) / TRADING_DAYS
    out: dict[str, float] = {}
    for t in close.columns:
        out[f"{t} annual return"] = (close[t].iloc[-1] / close[t].iloc[0]) ** (1 / years) - 1
        out[f"{t} annual volatility"] = r[t].std() * np.sqrt(TRADING_DAYS)
        out[f"{t} max drawdown"] = max_drawdown(close[t])
        out[f"{t} |r| autocorr lag 1"] = r[t].abs().autocorr(1)
        out[f"{t} |r| autocorr lag 5"] = r[t].abs().autocorr(5)
    cols = list(close.columns)
    for i, a in enumerate(cols):
        for b in cols[i + 1:]:
            out[f"corr {a}/{b}"] = r[a].corr(r[b])
    out["VIX mean"] = vix.mean()
    out["corr VIX change/SPY"] = np.log(vix).diff().dropna().corr(r["SPY"])
    return {k: float(v) for k, v in out.items()}


def real_statistics(market_dir: Path, assets: Sequence[str] = DEFAULT_ASSETS) -> dict[str, float]:
    bars = read_bars(market_dir, [*assets, VIX])
    return describe(pd.DataFrame({t: bars[t]["Close"] for t in assets}), bars[VIX]["Close"])


def synthetic_statistics(seeds: Iterable[int], assets: Sequence[str] = DEFAULT_ASSETS) -> pd.DataFrame:
    """One row of `describe` per seed, over the fit window of the embedded market."""
    from rl_strategy.synthetic import generate_market

    rows = []
    for seed in seeds:
        m = generate_market([*assets, VIX], pd.Timestamp(FIT_START), pd.Timestamp(FIT_END), seed)
        rows.append(describe(pd.DataFrame({t: m[t]["Close"] for t in assets}), m[VIX]["Close"]))
    return pd.DataFrame(rows)


def synthetic_vs_real_table(market_dir: Path, seeds: Iterable[int] = range(10)) -> pd.DataFrame:
    """Real 2005-2024 statistics beside the first seed's and the mean and 5-95% band over `seeds`."""
    from rl_strategy.synthetic import SUPPORTED_TICKERS

    seeds = list(seeds)
    assets = [t for t in SUPPORTED_TICKERS if t != VIX]
    synth = synthetic_statistics(seeds, assets)
    label = f"seeds {seeds[0]}-{seeds[-1]}" if seeds == list(range(seeds[0], seeds[-1] + 1)) else "seeds"
    return pd.DataFrame({"real": pd.Series(real_statistics(market_dir, assets)),
                         f"seed {seeds[0]}": synth.iloc[0],
                         f"mean of {label}": synth.mean(),
                         "5% of seeds": synth.quantile(0.05),
                         "95% of seeds": synth.quantile(0.95)})


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--market-dir", type=Path, default=Path("../shared/data/market"))
    ap.add_argument("--assets", nargs="+", default=list(DEFAULT_ASSETS), help="SPY first (default: %(default)s)")
    ap.add_argument("--write", action="store_true", help=f"overwrite {PARAMS_FILE.name} instead of printing")
    ap.add_argument("--table", action="store_true", help="print the real-vs-synthetic table (markdown)")
    ap.add_argument("--seeds", type=int, default=10, help="--table: seeds 0..N-1 (default: %(default)s)")
    args = ap.parse_args(argv)
    if args.table:
        table = synthetic_vs_real_table(args.market_dir, range(args.seeds))
        print(table.rename(index=lambda row: row.replace("|", "\\|")).to_markdown(floatfmt=".3f"))
        return
    text = render_params(fit(args.market_dir, args.assets))
    if args.write:
        PARAMS_FILE.write_text(text)
        print(f"wrote {PARAMS_FILE}")
    else:
        print(text, end="")


if __name__ == "__main__":
    main()
