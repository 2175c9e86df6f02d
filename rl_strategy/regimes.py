"""The regime table: the discrete actions the policy chooses from, built by one rule.

Action 0 is HOLD (place no order; weights drift with prices). Every other action is a named
target-weight vector over [CASH, *assets]. The table is derived from the universe alone, so a
new set of tickers needs no code change. For the v2 universe (SPY, QQQ, IWM) the rule yields
exactly these 16 regimes:

| id | name          | CASH | SPY  | QQQ  | IWM  |
|----|---------------|------|------|------|------|
|  0 | HOLD          |  -   |  -   |  -   |  -   |
|  1 | ALL_CASH      | 1    | 0    | 0    | 0    |
|  2 | ALL_SPY       | 0    | 1    | 0    | 0    |
|  3 | ALL_QQQ       | 0    | 0    | 1    | 0    |
|  4 | ALL_IWM       | 0    | 0    | 0    | 1    |
|  5 | PAIR_SPY_QQQ  | 0    | 1/2  | 1/2  | 0    |
|  6 | PAIR_SPY_IWM  | 0    | 1/2  | 0    | 1/2  |
|  7 | PAIR_QQQ_IWM  | 0    | 0    | 1/2  | 1/2  |
|  8 | EQ_WEIGHT     | 0    | 1/3  | 1/3  | 1/3  |
|  9 | TILT_SPY      | 0    | 1/2  | 1/4  | 1/4  |
| 10 | TILT_QQQ      | 0    | 1/4  | 1/2  | 1/4  |
| 11 | TILT_IWM      | 0    | 1/4  | 1/4  | 1/2  |
| 12 | HALF_SPY      | 1/2  | 1/2  | 0    | 0    |
| 13 | HALF_QQQ      | 1/2  | 0    | 1/2  | 0    |
| 14 | HALF_IWM      | 1/2  | 0    | 0    | 1/2  |
| 15 | HALF_EQ       | 1/2  | 1/6  | 1/6  | 1/6  |

Rule, in order: HOLD, ALL_CASH, ALL_<a> per asset, PAIR_<a>_<b> (50/50) per pair, EQ_WEIGHT,
TILT_<a> (half in a, the other half split equally), HALF_<a> (half cash, half a), HALF_EQ.
A vector equal to an earlier one is dropped (with two assets a TILT equals the PAIR).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np

from rl_strategy.errors import RLTraderError

HOLD = 0
#: Families of the rule, in table order (HOLD and ALL_CASH are always in the table): ALL_<a>; PAIR_<a>_<b>;
#: EQ_WEIGHT; TILT_<a>; HALF_<a> and HALF_EQ. `regimes.families` in a config keeps a subset.
REGIME_FAMILIES = ("all", "pair", "eq", "tilt", "half")


@dataclass(frozen=True)
class RegimeTable:
    """Names and target weights of the actions. `weights[0]` (HOLD) is all NaN."""

    assets: tuple[str, ...]
    names: tuple[str, ...]
    weights: np.ndarray  # (n_actions, n_assets) asset weights; CASH = 1 - row sum

    @property
    def n_actions(self) -> int:
        return len(self.names)

    def cash_weights(self) -> np.ndarray:
        """Target weights with CASH as column 0, for display: (n_actions, 1 + n_assets)."""
        return np.concatenate([1.0 - self.weights.sum(axis=1, keepdims=True), self.weights], axis=1)

    def initial_weights(self, name: str) -> np.ndarray:
        """Asset weights of a starting portfolio: "cash" (all cash) or a regime name (not HOLD).
        The same names serve backtests (`--initial`) and training start states."""
        if name.lower() == "cash":
            return np.zeros(len(self.assets))
        if name not in self.names or name == "HOLD":
            raise RLTraderError(f"unknown initial portfolio {name!r}: use cash or a regime ({', '.join(self.names[1:])})")
        return self.weights[self.names.index(name)].copy()

    def to_dict(self) -> dict:
        """Plain, checkpoint-safe representation (lists of str/float)."""
        return {"assets": list(self.assets), "names": list(self.names),
                "weights": [[None if np.isnan(x) else float(x) for x in row] for row in self.weights]}


def build_regime_table(assets: tuple[str, ...] | list[str]) -> RegimeTable:
    """Apply the rule above to a universe of tradable assets (CASH is implicit)."""
    assets = tuple(assets)
    n = len(assets)
    if n == 0:
        raise RLTraderError("a universe needs at least one asset")
    candidates: list[tuple[str, np.ndarray]] = [("ALL_CASH", np.zeros(n))]
    for i, a in enumerate(assets):
        candidates.append((f"ALL_{a}", np.eye(n)[i]))
    for i, j in combinations(range(n), 2):
        w = np.zeros(n)
        w[[i, j]] = 0.5
        candidates.append((f"PAIR_{assets[i]}_{assets[j]}", w))
    candidates.append(("EQ_WEIGHT", np.full(n, 1.0 / n)))
    if n > 1:
        for i, a in enumerate(assets):
            w = np.full(n, 0.5 / (n - 1))
            w[i] = 0.5
            candidates.append((f"TILT_{a}", w))
    for i, a in enumerate(assets):
        candidates.append((f"HALF_{a}", 0.5 * np.eye(n)[i]))
    candidates.append(("HALF_EQ", np.full(n, 0.5 / n)))

    names, rows = ["HOLD"], [np.full(n, np.nan)]
    for name, w in candidates:
        if not any(np.allclose(w, r) for r in rows[1:]):
            names.append(name)
            rows.append(w)
    return RegimeTable(assets=assets, names=tuple(names), weights=np.vstack(rows))
