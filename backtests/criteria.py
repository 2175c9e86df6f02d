"""The v2 regression gate: each criterion with its value, threshold and outcome.

Thresholds come from the config's `criteria` section; `rltrader backtest --check` exits 1
when any criterion fails.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import pandas as pd

from rl_strategy.settings import CriteriaSettings

RL_NAME = "RL"


@dataclass(frozen=True)
class Criterion:
    name: str
    value: float
    threshold: float
    passed: bool

    def to_dict(self) -> dict:
        """JSON-safe: an undefined value (e.g. the Sharpe of a policy that never invested) is None."""
        out = asdict(self)
        for key in ("value", "threshold"):
            if not math.isfinite(out[key]):
                out[key] = None
        return out


def evaluate_criteria(table: pd.DataFrame, thresholds: CriteriaSettings,
                      benchmark: str = "ALL_SPY") -> list[Criterion]:
    """`table`: the ranked metrics (index = policy names, with RL and the benchmark)."""
    rl = table.loc[RL_NAME]
    spy_sharpe = table.loc[benchmark, "sharpe"] if benchmark in table.index else math.nan
    # NaN compares False everywhere: a missing value never passes.
    t = thresholds
    return [
        Criterion("rl_sharpe_min", float(rl["sharpe"]), t.min_sharpe, bool(rl["sharpe"] >= t.min_sharpe)),
        Criterion(f"rl_sharpe_vs_{benchmark.lower()}", float(rl["sharpe"]), float(spy_sharpe - t.max_sharpe_gap_to_spy),
                  bool(rl["sharpe"] >= spy_sharpe - t.max_sharpe_gap_to_spy)),
        Criterion("rl_turnover_max", float(rl["turnover"]), t.max_turnover, bool(rl["turnover"] <= t.max_turnover)),
        Criterion("rl_rank_max", float(rl["rank"]), float(t.max_rank), bool(rl["rank"] <= t.max_rank)),
    ]
