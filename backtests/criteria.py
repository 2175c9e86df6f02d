"""The v2 regression gate: each criterion with its value, threshold and outcome.

The seed's four (Sharpe floor, Sharpe vs ALL_SPY, turnover, rank) read the table's RL row (the
greedy path, or the sampled path of median Sharpe with `--policy-mode sample`);
`rl_greedy_representative` checks that the greedy readout agrees with the sampled policy.

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
    threshold: float | tuple[float, float]  # a bound, or a (low, high) band
    passed: bool

    def threshold_text(self) -> str:
        t = self.threshold
        return f"{t[0]:g}..{t[1]:g}" if isinstance(t, tuple) else f"{t:.4f}"

    def to_dict(self) -> dict:
        """JSON-safe: an undefined value (e.g. the Sharpe of a policy that never invested) is None."""
        out = asdict(self)
        out["value"] = out["value"] if math.isfinite(out["value"]) else None
        t = self.threshold
        out["threshold"] = list(t) if isinstance(t, tuple) else (t if math.isfinite(t) else None)
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


def greedy_representative(greedy_percentile: float, t: CriteriaSettings) -> Criterion:
    """The greedy (argmax) readout must look like the policy as trained: its Sharpe must fall inside
    the sampled paths' percentile band, else the table's greedy figures are an artefact of argmax."""
    band = (t.greedy_percentile_min, t.greedy_percentile_max)
    return Criterion("rl_greedy_representative", float(greedy_percentile), band,
                     bool(band[0] <= greedy_percentile <= band[1]))
