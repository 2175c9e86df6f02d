"""Risk limits and overlays (`risk:` in a config): one rule for training, replay and the backtest.

Two kinds of rule, both applied before the accounting, so the environment still equals vectorbt
fed with the weights it traded:

- **Limits** (`max_asset_weight`, `min_cash`, `max_gross`) remove regimes from the action set:
  `action_mask` marks the regimes whose target breaks one, and the policy puts -1e9 on their
  logits (`GRUPolicy(action_mask=...)`) in the rollout, the update and every replay. HOLD is
  never masked: it places no order (drifted weights may pass a limit between orders).
- **Overlays** change the target of the chosen action on the decision day, from data up to that
  day's close and the account's own state (`RiskOverlay.targets`, called by `MarketEnv.step`):
  1. volatility target: the held regime's asset weights times min(1, vol_target / the trailing
     annualised volatility of the regime's daily-rebalanced portfolio over the last `vol_window`
     closes), cash takes the rest. The regime is the one last ordered, so HOLD keeps it and is
     re-targeted to each day's scale (the band below keeps small changes from trading); before
     the first order (a start portfolio) HOLD places nothing;
  2. drawdown brake: when the drawdown from the environment's trailing peak (`env.drawdown_window`
     closes) reaches `drawdown_brake`, the brake goes on and stays on until the drawdown is back at
     or below `brake_release`; while on, asset weights are scaled so their sum is at most
     `brake_exposure`, HOLD included (an over-exposed account is traded down);
  3. rebalance band: an order whose every target weight (cash included) is within
     `rebalance_band` of the weight held at the decision close is not placed.

The trailing volatility is annualised with a fixed 252 days so a target means the same on every
calendar (the synthetic market has 261 business days a year).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from rl_strategy.errors import RLTraderError
from rl_strategy.regimes import HOLD, RegimeTable

if TYPE_CHECKING:
    from rl_strategy.settings import RiskSettings

#: Logit of a masked action: exp() underflows to exactly 0 and 0 * logit stays 0 in the entropy.
MASKED_LOGIT = -1e9
#: Days per year of the trailing volatility's annualisation.
VOL_ANNUALISATION = 252
#: Slack on the limits: a regime exactly at a limit (1/2 under a 50% cap) is allowed.
LIMIT_TOL = 1e-9


def action_mask(regimes: RegimeTable, risk: RiskSettings) -> np.ndarray:
    """(n_actions,) True where the action is allowed: HOLD, and every regime within the limits."""
    w = np.nan_to_num(regimes.weights, nan=0.0)
    gross = w.sum(axis=1)
    ok = ((w.max(axis=1) <= risk.max_asset_weight + LIMIT_TOL) & (1.0 - gross >= risk.min_cash - LIMIT_TOL)
          & (gross <= risk.max_gross + LIMIT_TOL))
    ok[HOLD] = True
    if not (ok & (gross > 0)).any():
        raise RLTraderError("the risk limits leave no regime that holds assets: loosen risk.max_asset_weight, "
                            "risk.min_cash or risk.max_gross")
    return ok


def policy_mask(regimes: RegimeTable, risk: RiskSettings) -> np.ndarray | None:
    """The mask the policy applies, or None when the limits mask nothing (no buffer: v2 weights unchanged)."""
    mask = action_mask(regimes, risk)
    return None if mask.all() else mask


def regime_volatility(growth: np.ndarray, weights: np.ndarray, window: int) -> np.ndarray:
    """(T, n_actions) annualised volatility, at each close t, of each regime's daily-rebalanced
    portfolio over the returns of the last `window` closes up to t. `growth[t]` is close t+1 / close t
    (row t's return is realised at close t+1), so row t uses growth rows t-window..t-1 only; NaN
    before `window` returns exist."""
    w = np.nan_to_num(weights, nan=0.0)
    realised = np.vstack([np.full((1, w.shape[0]), np.nan), (growth[:-1] - 1.0) @ w.T])  # return at close t
    vol = pd.DataFrame(realised).rolling(window, min_periods=window).std(ddof=1).to_numpy()
    return vol * np.sqrt(VOL_ANNUALISATION)


def vol_scale(growth: np.ndarray, weights: np.ndarray, target: float, window: int) -> np.ndarray:
    """(T, n_actions) min(1, target / trailing vol); 1 where the regime has no volatility (cash)."""
    vol = regime_volatility(growth, weights, window)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.minimum(1.0, target / vol)
    return np.where(vol > 0, scale, 1.0)


class RiskOverlay:
    """The overlays of `risk` on one market and regime table, as device tensors for the env's step."""

    def __init__(self, risk: RiskSettings, growth: np.ndarray, regimes: RegimeTable, first_decision: int,
                 device: torch.device, dtype: torch.dtype) -> None:
        self.risk = risk
        self.scale = None
        if risk.vol_target is not None:
            if first_decision < risk.vol_window:
                raise RLTraderError(f"risk.vol_window {risk.vol_window} needs that many closes before the first "
                                    f"decision; the panel has {first_decision}")
            table = vol_scale(growth, regimes.weights, risk.vol_target, risk.vol_window)
            self.scale = torch.as_tensor(np.nan_to_num(table, nan=1.0), device=device, dtype=dtype)
            self.weights = torch.as_tensor(np.nan_to_num(regimes.weights, nan=0.0), device=device, dtype=dtype)
        self.brake: torch.Tensor | None = None
        self.regime: torch.Tensor | None = None

    def reset(self, n_envs: int, device: torch.device) -> None:
        """Every episode starts with the brake off and no regime ordered yet."""
        self.brake = torch.zeros(n_envs, dtype=torch.bool, device=device)
        self.regime = torch.full((n_envs,), HOLD, dtype=torch.long, device=device)

    def state(self) -> dict:
        return {"brake": self.brake.clone(), "regime": self.regime.clone()}

    def load_state(self, state: dict, device: torch.device) -> None:
        self.brake = state["brake"].to(device, copy=True)
        self.regime = state["regime"].to(device, copy=True)

    def targets(self, day: torch.Tensor, actions: torch.Tensor, target: torch.Tensor, trade: torch.Tensor,
                held: torch.Tensor, value: torch.Tensor, peak: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The overlaid (target, trade) of one step. `target` (B, n) the regimes' asset weights, `trade`
        (B, 1) 1.0 = order; `held` (B, n) the asset weights at the decision close; `value`/`peak` the
        account's value and trailing peak at that close."""
        r = self.risk
        if self.scale is not None:  # HOLD keeps the regime last ordered, at today's scale
            self.regime = torch.where(actions != HOLD, actions, self.regime)
            scale = self.scale.index_select(0, day).gather(1, self.regime.unsqueeze(1))
            target = self.weights.index_select(0, self.regime) * scale
            trade = (self.regime != HOLD).unsqueeze(1).to(trade.dtype)
        if r.drawdown_brake is not None:
            drawdown = 1.0 - value / peak
            self.brake = (drawdown >= r.drawdown_brake) | (self.brake & (drawdown > r.brake_release))
            base = torch.where(trade > 0, target, held)
            gross = base.sum(dim=1, keepdim=True)
            over = self.brake.unsqueeze(1) & (gross > r.brake_exposure + LIMIT_TOL)
            target = torch.where(over, base * (r.brake_exposure / gross.clamp(min=LIMIT_TOL)), target)
            trade = torch.maximum(trade, over.to(trade.dtype))
        if r.rebalance_band > 0:
            gap = torch.maximum((target - held).abs().amax(dim=1, keepdim=True),
                                (target.sum(dim=1, keepdim=True) - held.sum(dim=1, keepdim=True)).abs())
            trade = trade * (gap >= r.rebalance_band).to(trade.dtype)
        return target, trade
