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

Families. The rule's regimes come in families: "all" (ALL_<a>), "pair" (PAIR_<a>_<b>), "eq"
(EQ_WEIGHT), "tilt" (TILT_<a>) and "half" (HALF_<a> and HALF_EQ); HOLD and ALL_CASH are always
in the table. `regimes.families` in a config keeps a subset, in the rule's order whatever the
order of the list; the default, every family, is the table above. The cap matters for wide
universes, where pairs grow quadratically: 11 sector ETFs give 92 regimes with every family and
26 with ["all", "eq", "half"]. Baselines name rule regimes (ALL_SPY, EQ_WEIGHT) that a capped
table may lack: `rule_weights` gives their target weights from the rule itself.
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

    def action_of(self, weights: np.ndarray) -> int | None:
        """The action whose target is `weights` (None when the table has none): a target named by
        its weights, e.g. equal weight, is EQ_WEIGHT or, for one asset, ALL_<a>."""
        return next((i for i in range(1, self.n_actions) if np.allclose(self.weights[i], weights)), None)

    def to_dict(self) -> dict:
        """Plain, checkpoint-safe representation (lists of str/float)."""
        return {"assets": list(self.assets), "names": list(self.names),
                "weights": [[None if np.isnan(x) else float(x) for x in row] for row in self.weights]}


def _rule(assets: tuple[str, ...]) -> list[tuple[str | None, str, np.ndarray]]:
    """Every candidate of the rule as (family, name, asset weights), in table order, before
    duplicates are dropped; ALL_CASH has no family (it is always in the table)."""
    n = len(assets)
    eye = np.eye(n)
    out: list[tuple[str | None, str, np.ndarray]] = [(None, "ALL_CASH", np.zeros(n))]
    out += [("all", f"ALL_{a}", eye[i]) for i, a in enumerate(assets)]
    for i, j in combinations(range(n), 2):
        w = np.zeros(n)
        w[[i, j]] = 0.5
        out.append(("pair", f"PAIR_{assets[i]}_{assets[j]}", w))
    out.append(("eq", "EQ_WEIGHT", np.full(n, 1.0 / n)))
    if n > 1:
        for i, a in enumerate(assets):
            w = np.full(n, 0.5 / (n - 1))
            w[i] = 0.5
            out.append(("tilt", f"TILT_{a}", w))
    out += [("half", f"HALF_{a}", 0.5 * eye[i]) for i, a in enumerate(assets)]
    out.append(("half", "HALF_EQ", np.full(n, 0.5 / n)))
    return out


def _universe(assets: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    assets = tuple(assets)
    if not assets:
        raise RLTraderError("a universe needs at least one asset")
    return assets


def build_regime_table(assets: tuple[str, ...] | list[str],
                       families: tuple[str, ...] | list[str] = REGIME_FAMILIES) -> RegimeTable:
    """Apply the rule above to a universe of tradable assets (CASH is implicit), keeping only the
    regimes of `families` (HOLD and ALL_CASH always)."""
    assets = _universe(assets)
    unknown = sorted(set(families) - set(REGIME_FAMILIES))
    if unknown:
        raise RLTraderError(f"unknown regime family {unknown[0]!r} (families: {', '.join(REGIME_FAMILIES)})")
    names, rows = ["HOLD"], [np.full(len(assets), np.nan)]
    for family, name, w in _rule(assets):
        if (family is None or family in families) and not any(np.allclose(w, r) for r in rows[1:]):
            names.append(name)
            rows.append(w)
    return RegimeTable(assets=assets, names=tuple(names), weights=np.vstack(rows))


def rule_weights(assets: tuple[str, ...] | list[str], name: str) -> np.ndarray:
    """The asset weights the rule gives regime `name` over `assets`, whether or not a table keeps it
    (a capped family, or a duplicate such as EQ_WEIGHT of a one-asset universe): what a baseline
    named after a regime (ALL_SPY, EQ_WEIGHT) buys, independent of the policy's action set."""
    for _, candidate, w in _rule(_universe(assets)):
        if candidate == name:
            return w.copy()
    raise RLTraderError(f"no regime {name!r} in the rule for {', '.join(assets)}")
