"""Validation during training: the current policy replayed on a window it never trains on.

Every `run.eval_every` updates the policy is read out on the validation window the way a backtest
reads it (`rl_strategy.replay`, one batched environment run, exact accounting, no vectorbt
simulation): rolling origins on the first trading day of each month whose `eval_horizon_days`
fit in the window, each with `eval_samples` sampled paths (the policy as trained), one greedy path,
and equal weight bought at the same origin in the same batch.

The score (higher is better) is

    median over origins of [ median over samples of Sharpe(sampled path) - Sharpe(equal weight) ]

net of costs, with the project's one Sharpe (`rl_strategy.portfolio.annualised_sharpe`). The
greedy figure is logged beside it but never chosen on: a greedy readout can be an artefact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from rl_strategy.data import MarketData
from rl_strategy.env import prepare_training_market
from rl_strategy.errors import RLTraderError
from rl_strategy.policy import GRUPolicy
from rl_strategy.portfolio import annualised_sharpe, month_starts, periods_per_year
from rl_strategy.regimes import HOLD, RegimeTable
from rl_strategy.replay import replay
from rl_strategy.settings import Settings

#: Columns the validation adds to the metrics CSV.
VALIDATION_COLUMNS = ("val_score", "val_sampled_sharpe", "val_greedy_sharpe", "val_ew_sharpe")


@dataclass
class Validator:
    """The validation window's paths, prepared once; `evaluate(policy)` scores a policy."""

    settings: Settings
    data: MarketData
    regimes: RegimeTable
    device: str

    def __post_init__(self) -> None:
        e, r = self.settings.env, self.settings.run
        self.market = prepare_training_market(self.data, e.execution, e.features)
        m = self.market
        rows = month_starts(m.dates)
        rows = rows[(rows >= m.first_decision) & (rows + r.eval_horizon_days - 1 <= m.last_decision)]
        if not len(rows):
            raise RLTraderError(f"the validation window {m.dates[m.first_decision].date()}..{m.dates[-1].date()} is "
                                f"shorter than run.eval_horizon_days ({r.eval_horizon_days}): lengthen it or lower that")
        self.origins = rows
        k, n = len(rows), r.eval_samples
        # Per origin: n sampled paths, then the greedy path, then equal weight bought and held.
        self.starts = np.concatenate([np.repeat(rows, n), rows, rows])
        self.sample = np.r_[np.ones(k * n, bool), np.zeros(2 * k, bool)]
        self.seeds = np.random.SeedSequence(self.settings.run.seed).generate_state(len(self.starts))
        forced = np.full((r.eval_horizon_days, len(self.starts)), -1, dtype=np.int64)
        forced[:, -k:] = HOLD
        forced[0, -k:] = self._equal_weight_action()
        self.forced = forced
        self.periods = periods_per_year(self.data.panel.index)

    def _equal_weight_action(self) -> int:
        """The action that buys equal weight (EQ_WEIGHT; ALL_<a> for one asset), the score's yardstick:
        a table without it (regimes.families without eq) cannot be validated this way."""
        n = len(self.regimes.assets)
        action = self.regimes.action_of(np.full(n, 1.0 / n))
        if action is None:
            raise RLTraderError("validation scores against equal weight bought at each origin, which this regime "
                                "table lacks: add eq to regimes.families or drop the validation window")
        return action

    def evaluate(self, policy: GRUPolicy) -> dict[str, float]:
        e, r = self.settings.env, self.settings.run
        k, n = len(self.origins), r.eval_samples
        paths = replay(policy, self.market, self.regimes, starts=self.starts,
                       lengths=np.full(len(self.starts), r.eval_horizon_days), sample=self.sample, seeds=self.seeds,
                       initial=None, fees=e.fees, slippage=e.slippage, obs_dim=policy.obs_dim, device=self.device,
                       forced=self.forced, drawdown_window=e.drawdown_window, risk=self.settings.risk)
        values = np.vstack([np.ones((1, len(self.starts))), paths.values])  # 1 at the close before each start
        sharpe = annualised_sharpe(pd.DataFrame(values[1:] / values[:-1] - 1.0), self.periods).to_numpy()
        sampled = np.median(sharpe[:k * n].reshape(k, n), axis=1)
        greedy, ew = sharpe[k * n:k * n + k], sharpe[-k:]
        return {"val_score": float(np.median(sampled - ew)), "val_sampled_sharpe": float(np.median(sampled)),
                "val_greedy_sharpe": float(np.median(greedy)), "val_ew_sharpe": float(np.median(ew))}
