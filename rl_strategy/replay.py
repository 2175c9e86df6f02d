"""Batched policy readouts: many paths of one policy through the environment in one run.

A path is a first decision row, a number of decisions, a readout (greedy argmax or sampled as
trained), a seed and a starting portfolio. A backtest's greedy path, its sampled paths and its
rolling origins are all paths of one batched `MarketEnv`: one GRU call and one environment step
per day for all of them, no Python loop over paths and no host sync inside the loop. Paths of
different lengths run together; a path's results past its end are discarded.

Every path records the orders the environment placed (`targets`, after any risk overlay), which is
what vectorbt is fed, so the two stay equal by construction. With no network (`net=None`) the
paths are given action sequences (`forced`), e.g. baselines run through the same risk overlay.

Sampling draws inverse-CDF uniforms from a per-path stream seeded by the path's seed (not from a
shared generator), so a path sampled in a batch is the same path sampled alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from rl_strategy.env import MarketEnv, MarketTensors
from rl_strategy.errors import RLTraderError
from rl_strategy.policy import GRUPolicy
from rl_strategy.regimes import RegimeTable

if TYPE_CHECKING:
    from rl_strategy.settings import RiskSettings


@dataclass(frozen=True)
class Paths:
    """Step-indexed results: step k of path i is decision row `starts[i] + k` (k < lengths[i])."""

    starts: np.ndarray    # (B,) row of each path's first decision
    lengths: np.ndarray   # (B,) decisions per path
    actions: np.ndarray   # (L, B) action index (0 = HOLD); -1 past a path's end
    values: np.ndarray    # (L + 1, B) value at the close of row starts + k (1 at the close before start); NaN past the end
    entropy: np.ndarray   # (L, B) entropy of the policy's action distribution at each decision
    max_prob: np.ndarray  # (L, B) probability of its most likely action
    targets: np.ndarray   # (L, B, n_assets) the order's target weights, NaN where no order was placed


def uniform_streams(seeds: np.ndarray, length: int) -> torch.Tensor:
    """(length, B) float64 uniforms; column i is the first `length` draws of a generator seeded seeds[i]."""
    cols = [torch.rand(length, generator=torch.Generator().manual_seed(int(s)), dtype=torch.float64) for s in seeds]
    return torch.stack(cols, dim=1) if cols else torch.zeros(length, 0, dtype=torch.float64)


@torch.inference_mode()
def replay(net: GRUPolicy | None, market: MarketTensors, regimes: RegimeTable, *, starts: np.ndarray, lengths: np.ndarray,
           sample: np.ndarray, seeds: np.ndarray, initial: np.ndarray | None, fees: float, slippage: float,
           obs_dim: int, device: str | torch.device = "cpu", forced: np.ndarray | None = None,
           drawdown_window: int = 0, risk: RiskSettings | None = None) -> Paths:
    """Run every path of the batch through the environment (float64 accounting; the network runs in
    the float32 it was trained in). `initial`: (B, n_assets) weights held from the close before each
    path's start, or None for all cash. `drawdown_window`: the observation's drawdown input as the
    policy was trained with it (`env.drawdown_window`). `forced`: (max length, B) action ids that replace the
    policy's (-1 = the policy decides), e.g. a buy-and-hold benchmark run in the same batch; with `net=None`
    every action is forced. `risk`: the overlays the policy was trained with (`settings.risk`)."""
    starts, lengths = np.asarray(starts, dtype=np.int64), np.asarray(lengths, dtype=np.int64)
    B = len(starts)
    if B == 0 or (lengths < 1).any():
        raise RLTraderError("a replay needs at least one path of at least one decision")
    if starts.min() < market.first_decision or (starts + lengths - 1).max() > market.last_decision:
        raise RLTraderError("a replay path starts before the feature warm-up or ends after the last decision day")
    L = int(lengths.max())
    if net is None and (forced is None or (np.asarray(forced)[:L] < 0).any()):
        raise RLTraderError("a replay without a policy needs every action given (forced)")
    env = MarketEnv(market, regimes, n_envs=B, episode_length=L, fees=fees, slippage=slippage, obs_dim=obs_dim,
                    device=device, dtype=torch.float64, drawdown_window=drawdown_window, risk=risk)
    dev = env.device
    init = None if initial is None else torch.as_tensor(np.asarray(initial, dtype=np.float64), device=dev)
    obs = env.reset(torch.as_tensor(starts, device=dev), init)
    uniforms = uniform_streams(np.asarray(seeds), L).to(dev)
    sampled = torch.as_tensor(np.asarray(sample, dtype=bool), device=dev)
    fixed = None if forced is None else torch.as_tensor(np.asarray(forced, dtype=np.int64), device=dev)
    state = None if net is None else net.initial_state(B, dev)
    actions = torch.zeros(L, B, dtype=torch.long, device=dev)
    values = torch.empty(L + 1, B, dtype=torch.float64, device=dev)
    targets = torch.empty(L, B, len(market.assets), dtype=torch.float64, device=dev)
    # Without a network the logits are uniform (entropy and top probability are then not the policy's).
    all_logits = torch.zeros(L, B, regimes.n_actions, device=dev)
    values[0] = env.value
    last = regimes.n_actions - 1
    for k in range(L):
        if net is None:
            action = fixed[k]
        else:
            logits, _, state = net.step(obs.float(), state)
            all_logits[k] = logits
            cdf = torch.softmax(logits, -1).double().cumsum_(-1)
            draws = (cdf < uniforms[k].unsqueeze(1)).sum(-1).clamp_(max=last)
            action = torch.where(sampled, draws, logits.argmax(-1))
            if fixed is not None:
                action = torch.where(fixed[k] >= 0, fixed[k], action)
        obs, _, _, _, info = env.step(action)
        actions[k] = action
        targets[k] = torch.where(env.last_trade > 0, env.last_target, torch.nan)
        values[k + 1] = info["final_value"] if "final_value" in info else env.value

    logp = torch.log_softmax(all_logits, -1)
    entropy, max_prob = -(logp.exp() * logp).sum(-1), logp.max(-1).values.exp()
    steps = np.arange(L)[:, None]
    live = steps < lengths[None, :]
    act = np.where(live, actions.cpu().numpy(), -1)
    vals = values.cpu().numpy()
    vals[1:][~live] = np.nan
    orders = targets.cpu().numpy()
    orders[~live] = np.nan
    return Paths(starts=starts, lengths=lengths, actions=act, values=vals,
                 entropy=np.where(live, entropy.cpu().numpy(), np.nan),
                 max_prob=np.where(live, max_prob.cpu().numpy(), np.nan), targets=orders)
