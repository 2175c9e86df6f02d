"""The trained policy as a vectorbt allocation strategy.

`RLPolicy.run` replays the policy over a price panel with the training environment itself
(same features, regime table and cost accounting), one decision per day from data up to that
day's close, running the GRU once through the period. Its observation includes the portfolio's
own drifted weights, which is why decisions are made by stepping the environment rather than
by a pure function of prices. The result is a weights DataFrame (NaN rows = HOLD) that
`rl_strategy.portfolio.simulate_portfolio` turns into a `vbt.Portfolio`, and the environment's
own equity curve, which must agree with vectorbt's (the backtest reports the difference).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from rl_strategy.checkpoint import Checkpoint, load_checkpoint, resolve_model_path
from rl_strategy.env import MarketEnv, prepare_market
from rl_strategy.errors import RLTraderError
from rl_strategy.features import WARMUP
from rl_strategy.regimes import RegimeTable, build_regime_table


@dataclass(frozen=True)
class PolicyRun:
    weights: pd.DataFrame   # dates x assets, the target on each decision day, NaN rows = HOLD / no decision
    actions: pd.Series      # regime name per decision day ("" where no decision was taken)
    equity: pd.Series       # the environment's portfolio value at each close, 1.0 before the first trade
    first_decision: pd.Timestamp


class RLPolicy:
    """A checkpoint ready for inference: `RLPolicy.load("checkpoints/x/model_final_*.pt")`."""

    def __init__(self, checkpoint: Checkpoint, device: str = "cpu") -> None:
        self.checkpoint = checkpoint
        self.device = device
        self.net = checkpoint.policy(device)
        self.regimes: RegimeTable = build_regime_table(checkpoint.assets)
        if self.regimes.names != checkpoint.spec.regime_names:
            raise RLTraderError(f"checkpoint {checkpoint.path.name} uses another regime table than this version builds")
        env = checkpoint.settings.env
        self.execution: str = env.execution
        self.fees: float = env.fees
        self.slippage: float = env.slippage

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> RLPolicy:
        return cls(load_checkpoint(resolve_model_path(str(path))), device)

    @property
    def assets(self) -> tuple[str, ...]:
        return self.checkpoint.assets

    def run(self, close: pd.DataFrame, open_: pd.DataFrame | None = None, *, start=None,
            execution: str | None = None, fees: float | None = None, slippage: float | None = None,
            sample: bool = False, seed: int = 0) -> PolicyRun:
        """Replay the policy over the panel; decisions from `start` (or the first day with a full
        feature history) to the second-to-last day. Costs and timing default to the checkpoint's."""
        close = self._frame(close, "close")
        open_ = self._frame(open_, "open") if open_ is not None else None
        execution = execution or self.execution
        first = WARMUP if start is None else max(WARMUP, int(close.index.searchsorted(pd.Timestamp(start))))
        market = prepare_market(close, open_, execution, first)
        length = market.last_decision - market.first_decision + 1
        env = MarketEnv(market, self.regimes, n_envs=1, episode_length=length,
                        fees=self.fees if fees is None else fees,
                        slippage=self.slippage if slippage is None else slippage,
                        obs_dim=self.checkpoint.spec.obs_dim, seed=seed, device=self.device,
                        dtype=torch.float64)
        # The network runs in the precision it was trained in; the accounting runs in float64.
        generator = torch.Generator(device=self.device).manual_seed(seed)
        obs = env.reset(torch.tensor([market.first_decision]))
        state = self.net.initial_state(1, self.device)
        actions = np.zeros(length, dtype=np.int64)
        equity = np.ones(len(close))
        with torch.no_grad():
            for k in range(length):
                logits, _, state = self.net.step(obs.float(), state)
                if sample:
                    action = torch.multinomial(torch.softmax(logits, -1), 1, generator=generator).squeeze(-1)
                else:
                    action = logits.argmax(-1)
                obs, _, _, _, info = env.step(action)
                actions[k] = int(action)
                equity[market.first_decision + k + 1] = float((info.get("final_value", env.value))[0])

        weights = np.full((len(close), len(self.assets)), np.nan)
        rows = np.arange(market.first_decision, market.first_decision + length)
        weights[rows] = self.regimes.weights[actions]
        names = np.full(len(close), "", dtype=object)
        names[rows] = np.asarray(self.regimes.names, dtype=object)[actions]
        index = close.index
        return PolicyRun(weights=pd.DataFrame(weights, index=index, columns=list(self.assets)),
                         actions=pd.Series(names, index=index, name="regime"),
                         equity=pd.Series(equity, index=index, name="equity"),
                         first_decision=index[market.first_decision])

    def target_weights(self, close: pd.DataFrame, open_: pd.DataFrame | None = None, **kwargs) -> pd.DataFrame:
        """Dates x assets target weights (CASH = 1 - sum); NaN rows where the policy holds."""
        return self.run(close, open_, **kwargs).weights

    def _frame(self, frame: pd.DataFrame, what: str) -> pd.DataFrame:
        if not isinstance(frame, pd.DataFrame):
            raise RLTraderError(f"{what} prices must be a DataFrame with one column per asset")
        missing = [a for a in self.assets if a not in frame.columns]
        if missing:
            raise RLTraderError(f"{what} prices lack {', '.join(missing)} (the policy trades {', '.join(self.assets)})")
        frame = frame[list(self.assets)].astype(np.float64)
        values = frame.to_numpy()
        if not np.isfinite(values).all() or (values <= 0).any():
            raise RLTraderError(f"{what} prices must be positive and finite (clean or forward-fill them first)")
        return frame
