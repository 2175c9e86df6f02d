"""The v2 regression gate: each criterion with its value, threshold and outcome.

The seed's four (Sharpe floor, Sharpe vs a reference, turnover, rank) read the table's RL row
(the greedy path, or the sampled path of median Sharpe with `--policy-mode sample`);
`rl_greedy_representative` checks that the greedy readout agrees with the sampled policy.

The Sharpe reference is `criteria.reference` (default ALL_SPY; the criterion is named
`rl_sharpe_vs_<reference>`, so `rl_sharpe_vs_all_spy` by default). It is a row of the table: a
baseline (ALL_SPY, EQ_BUY_HOLD, EQ_MONTHLY, ALL_<ticker>, RANDOM), or, when it names a ticker
outside the universe (SPY or ALL_SPY on a sector universe), `REF_<ticker>`: that ticker bought
and held with the same costs, start and execution, shown in the table unranked and marked
comparison-only, so it never moves RL's rank. A reference without a Sharpe is a one-line error,
never a silent FAIL.

Thresholds come from the config's `criteria` section; `rltrader backtest --check` exits 1
when any criterion fails.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass

import pandas as pd

from rl_strategy.errors import RLTraderError
from rl_strategy.settings import CriteriaSettings

RL_NAME = "RL"
#: Table rows of comparison-only references (a ticker outside the universe): REF_<ticker>.
REF_PREFIX = "REF_"


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


def reference_ticker(reference: str) -> str:
    """The ticker a reference names: ALL_SPY, REF_SPY and SPY all name SPY."""
    return re.sub(r"^(ALL_|REF_)", "", reference)


def reference_row(reference: str, rows) -> str | None:
    """The row of `rows` whose Sharpe is the reference: the name itself (a baseline), ALL_<ticker>
    (a ticker of the universe given bare) or REF_<ticker> (comparison-only); None if none is there."""
    ticker = reference_ticker(reference)
    return next((r for r in (reference, f"ALL_{ticker}", f"{REF_PREFIX}{ticker}") if r in rows), None)


def reference_sharpe(table: pd.DataFrame, reference: str) -> float:
    """The reference's Sharpe in `table`; a one-line error when it has none (a NaN threshold would
    make the gap criterion FAIL silently)."""
    row = reference_row(reference, table.index)
    if row is None:
        raise RLTraderError(f"criteria.reference {reference} has no Sharpe on this data: no row {reference} (or "
                            f"{REF_PREFIX}{reference_ticker(reference)}) in the table ({', '.join(table.index)})")
    sharpe = float(table.loc[row, "sharpe"])
    if not math.isfinite(sharpe):
        raise RLTraderError(f"criteria.reference {reference} has no Sharpe on this data: {row}'s Sharpe is {sharpe}")
    return sharpe


def evaluate_criteria(table: pd.DataFrame, thresholds: CriteriaSettings) -> list[Criterion]:
    """`table`: the ranked metrics (index = policy names, with RL and the reference's row)."""
    rl = table.loc[RL_NAME]
    t = thresholds
    gap_floor = reference_sharpe(table, t.reference) - t.max_sharpe_gap_to_spy
    # NaN compares False everywhere: a missing value of RL's never passes.
    return [
        Criterion("rl_sharpe_min", float(rl["sharpe"]), t.min_sharpe, bool(rl["sharpe"] >= t.min_sharpe)),
        Criterion(f"rl_sharpe_vs_{t.reference.lower()}", float(rl["sharpe"]), gap_floor, bool(rl["sharpe"] >= gap_floor)),
        Criterion("rl_turnover_max", float(rl["turnover"]), t.max_turnover, bool(rl["turnover"] <= t.max_turnover)),
        Criterion("rl_rank_max", float(rl["rank"]), float(t.max_rank), bool(rl["rank"] <= t.max_rank)),
    ]


def greedy_representative(greedy_percentile: float, t: CriteriaSettings) -> Criterion:
    """The greedy (argmax) readout must look like the policy as trained: its Sharpe must fall inside
    the sampled paths' percentile band, else the table's greedy figures are an artefact of argmax."""
    band = (t.greedy_percentile_min, t.greedy_percentile_max)
    return Criterion("rl_greedy_representative", float(greedy_percentile), band,
                     bool(band[0] <= greedy_percentile <= band[1]))
