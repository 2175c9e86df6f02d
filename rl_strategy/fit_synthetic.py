"""Fit the synthetic market's parameters to real data (run once; the numbers are committed).

    python -m rl_strategy.fit_synthetic --market-dir ../shared/data/market          # prints params
    python -m rl_strategy.fit_synthetic --market-dir ../shared/data/market --table  # real vs synthetic

Method (simple on purpose): days are labelled calm or stress by SPY's trailing 20-day realised
volatility (stress above its 80th percentile); the Markov transition probabilities, the
per-regime means and covariances of daily log returns, VIX's per-regime AR(1) in logs (with
its loading on SPY's shock) and the overnight share of variance are estimated from those labels.
"""

from __future__ import annotations

import argparse
import pprint
from pathlib import Path

import numpy as np
import pandas as pd

EQUITIES = ("SPY", "QQQ", "IWM")
FIT_START, FIT_END = "2005-01-01", "2024-12-31"


def _read(market_dir: Path, ticker: str) -> pd.DataFrame:
    frame = pd.read_csv(market_dir / f"{ticker}.csv", index_col=0, parse_dates=True)
    return frame.loc[FIT_START:FIT_END]


def fit(market_dir: Path) -> dict:
    frames = {t: _read(market_dir, t) for t in (*EQUITIES, "^VIX")}
    idx = frames["SPY"].index
    for f in frames.values():
        idx = idx.intersection(f.index)
    close = pd.DataFrame({t: frames[t].loc[idx, "Close"] for t in EQUITIES})
    open_ = pd.DataFrame({t: frames[t].loc[idx, "Open"] for t in EQUITIES})
    vix = frames["^VIX"].loc[idx, "Close"]
    rets = np.log(close).diff().iloc[1:]
    vol = rets["SPY"].rolling(20).std().shift(1).iloc[1:]  # trailing, known before the day
    rets, vix = rets.iloc[20:], vix.loc[rets.index[20:]]
    vol = vol.loc[rets.index]
    stress = (vol > vol.quantile(0.8)).to_numpy().astype(int)
    trans = np.zeros((2, 2))
    for a, b in zip(stress[:-1], stress[1:], strict=True):
        trans[a, b] += 1
    trans /= trans.sum(axis=1, keepdims=True)
    regimes = []
    lv = np.log(vix.to_numpy())
    level = np.array([lv[stress == s].mean() for s in (0, 1)])
    dev = lv - level[stress]  # log VIX around its regime's mean level
    for s in (0, 1):
        m = stress == s
        r = rets.to_numpy()[m]
        mu, cov = r.mean(axis=0), np.cov(r, rowvar=False)
        # AR(1) of the deviation, plus its loading on SPY's standardised return of the day
        mask = m[1:]
        y, x = dev[1:][mask], dev[:-1][mask]
        z = (rets["SPY"].to_numpy()[1:][mask] - mu[0]) / np.sqrt(cov[0, 0])
        (phi, beta), *_ = np.linalg.lstsq(np.column_stack([x, z]), y, rcond=None)
        resid = y - phi * x - beta * z
        regimes.append({"mean": mu.tolist(), "cov": cov.tolist(), "vix_level": float(level[s]),
                        "vix_phi": float(phi), "vix_beta": float(beta), "vix_sigma": float(resid.std())})
    overnight = np.log(open_ / close.shift(1)).iloc[1:].loc[rets.index]
    share = (overnight.var() / rets.var()).clip(0.05, 0.9)
    return {"assets": list(EQUITIES), "transition": trans.tolist(), "regimes": regimes,
            "overnight_share": share.round(4).tolist(), "start_prices": [100.0, 50.0, 60.0],
            "volume_level": [8e7, 5e7, 3e7], "fit_window": [FIT_START, FIT_END]}


def describe(close: pd.DataFrame, vix: pd.Series) -> dict:
    """The statistics the README compares, for one price panel."""
    r = np.log(close).diff().dropna()
    out = {}
    for t in close.columns:
        years = len(r) / 252
        out[f"{t} annual return"] = (close[t].iloc[-1] / close[t].iloc[0]) ** (1 / years) - 1
        out[f"{t} annual volatility"] = r[t].std() * np.sqrt(252)
        out[f"{t} max drawdown"] = (close[t] / close[t].cummax() - 1).min()
        out[f"{t} |r| autocorr lag 1"] = r[t].abs().autocorr(1)
        out[f"{t} |r| autocorr lag 5"] = r[t].abs().autocorr(5)
    cols = list(close.columns)
    for i in range(len(cols)):
        for j in range(i + 1, len(cols)):
            out[f"corr {cols[i]}/{cols[j]}"] = r[cols[i]].corr(r[cols[j]])
    out["VIX mean"] = vix.mean()
    out["corr VIX change/SPY"] = np.log(vix).diff().dropna().corr(r["SPY"])
    return out


def synthetic_vs_real_table(market_dir: Path, seeds=range(10)) -> pd.DataFrame:
    from rl_strategy.synthetic import generate_market

    frames = {t: _read(market_dir, t) for t in (*EQUITIES, "^VIX")}
    idx = frames["SPY"].index
    for f in frames.values():
        idx = idx.intersection(f.index)
    real = describe(pd.DataFrame({t: frames[t].loc[idx, "Close"] for t in EQUITIES}), frames["^VIX"].loc[idx, "Close"])
    synth = []
    for seed in seeds:
        m = generate_market([*EQUITIES, "^VIX"], pd.Timestamp(FIT_START), pd.Timestamp(FIT_END), seed)
        synth.append(describe(pd.DataFrame({t: m[t]["Close"] for t in EQUITIES}), m["^VIX"]["Close"]))
    synth_df = pd.DataFrame(synth)
    return pd.DataFrame({"real": pd.Series(real), "synthetic (mean of seeds)": synth_df.mean(),
                         "synthetic (seed 0)": synth_df.iloc[0]})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--market-dir", type=Path, default=Path("../shared/data/market"))
    ap.add_argument("--table", action="store_true", help="print the real-vs-synthetic table (markdown)")
    args = ap.parse_args()
    if args.table:
        print(synthetic_vs_real_table(args.market_dir).to_markdown(floatfmt=".3f"))
    else:
        print("PARAMS = " + pprint.pformat(fit(args.market_dir), width=110, sort_dicts=False))


if __name__ == "__main__":
    main()
