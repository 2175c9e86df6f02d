"""Developer tool: does the policy behave the same beyond the episode length it was trained on?

Training episodes last `env.episode_length` days (256 for v2) with a fresh GRU memory; a backtest
runs the GRU for years. This reads a checkpoint over a long period the way the backtest does
(`RLPolicy.paths`, sampled paths of the policy as trained) and prints its behaviour by days since
the start: mean entropy, mean top probability and the share of HOLD decisions. Beside each bucket,
the same calendar days read by paths restarted 126 days earlier (fresh memory, inside the trained
horizon). If the long paths drift away from the restarted ones after the training horizon, the
GRU's memory carries behaviour it never learned.

    python tools/horizon_drift.py --model 'checkpoints/rl_v2/model_final_*.pt' --csv-dir ../shared/data/market
"""

from __future__ import annotations

import argparse

import numpy as np

from rl_strategy.data import load_market
from rl_strategy.strategy import RLPolicy

BUCKETS = ((0, 128), (128, 256), (256, 512), (512, 1024), (1024, 100_000))
RESTART_LAG = 126


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--csv-dir", default=None, help="yfinance CSV folder (default: the synthetic market)")
    ap.add_argument("--start", default="2020-01-01")
    ap.add_argument("--end", default="2024-12-31")
    ap.add_argument("--paths", type=int, default=32)
    args = ap.parse_args()

    policy = RLPolicy.load(args.model)
    source = {"source": "csv", "csv_dir": args.csv_dir} if args.csv_dir else {"source": "synthetic"}
    data = load_market(list(policy.assets), args.start, args.end, **source, history_days=policy.warmup,
                       signals=list(policy.signal_tickers))
    idx, first, n = data.close.index, data.history_rows(), args.paths
    # Long paths from the period start, and one restarted path per day-bucket start (fresh memory).
    restarts = [first + max(0, lo - RESTART_LAG) for lo, _ in BUCKETS if first + lo < len(idx) - 2]
    names = [f"L{k}" for k in range(n)] + [f"R{r}_{k}" for r in restarts for k in range(n)]
    starts = [idx[first]] * n + [idx[r] for r in restarts for _ in range(n)]
    paths = policy.paths(data.close, data.open, names=names, starts=starts, sample=[True] * len(names),
                         seeds=list(range(len(names))), signals=data.signal_close)
    print(f"{args.model}: trained on {policy.checkpoint.settings.env.episode_length}-day episodes; "
          f"{n} sampled paths from {idx[first].date()}, restarted paths {RESTART_LAG} days before each bucket")
    print(f"{'days since start':>18} | {'long: entropy  top-p  HOLD':>28} | {'restarted: entropy  top-p  HOLD':>32}")
    for (lo, hi), r in zip(BUCKETS, restarts, strict=False):
        rows = np.arange(first + lo, min(first + hi, len(idx) - 1))
        long_cols, fresh_cols = names[:n], [f"R{r}_{k}" for k in range(n)]
        print(f"{f'{lo}-{hi}':>18} | {_stats(paths, rows, long_cols):>28} | {_stats(paths, rows, fresh_cols):>32}")


def _stats(paths, rows: np.ndarray, cols: list[str]) -> str:
    ent = paths.entropy[cols].iloc[rows].to_numpy()
    top = paths.max_prob[cols].iloc[rows].to_numpy()
    hold = (paths.actions[cols].iloc[rows] == "HOLD").to_numpy()
    live = ~np.isnan(ent)
    return f"{np.nanmean(ent):.3f}  {np.nanmean(top):.3f}  {hold[live].mean():.3f}" if live.any() else "-"


if __name__ == "__main__":
    main()
