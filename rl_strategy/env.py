"""The vectorised market environment: thousands of parallel episodes as tensors.

Each step t, every env sees the observation of day t (data up to t's close) and picks a
regime. With `execution="next_open"` the orders fill at day t+1's open and the holdings are
marked at t+1's close; with `"close"` they fill at t's close. The accounting is
`rl_strategy.accounting.rebalance`, the same recurrence vectorbt follows. The reward is the
step's net portfolio return (fees and slippage are inside the value) minus the return of the
equal-weight benchmark rebalanced daily, times `reward_scale`.

Start states: a backtest may start from cash or from any regime (`--initial`), so training can
too. `start_mix` gives the probabilities of starting all cash, in a regime drawn uniformly from
those that hold assets (every regime but HOLD and ALL_CASH, so the cash probability is exactly
the share of flat starts), or in EQ_WEIGHT. The drawn weights are held since the close before
the first decision, as in `reset(starts, initial)`.

The drawdown input is measured from the episode's running peak (`drawdown_window=0`), or from
the peak of the last `drawdown_window` closes (today's included), so it means the same in a
256-day episode and in a 5-year backtest. Before the episode the value counts as 1 (the value at
the close before the first decision), so a window of episode_length + 2 closes or more gives the
episode's drawdown.

Risk (`risk=`, rl_strategy/risk.py): the overlays (volatility target, drawdown brake, rebalance
band) turn the chosen regime into the day's order before the accounting, from data up to the
decision close and the account's state; `last_target`/`last_trade` keep what was ordered, which is
what a replay hands to vectorbt. The limits are not here: they mask the policy's logits.

All envs share the step counter within an episode (episodes start at random days but have
the same length), so the end of an episode is known on the host: stepping needs no Python
loop over envs and no host-device sync. The end of the window is a truncation, never a
termination; `info["final_obs"]` carries the observation the trainer bootstraps from.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from rl_strategy.accounting import rebalance
from rl_strategy.data import MarketData
from rl_strategy.errors import RLTraderError
from rl_strategy.features import DEFAULT_FEATURES, feature_warmup, market_features, observation_layout
from rl_strategy.portfolio import check_execution
from rl_strategy.regimes import HOLD, RegimeTable
from rl_strategy.risk import RiskOverlay

if TYPE_CHECKING:
    from rl_strategy.settings import RiskSettings

#: The kinds of start state of `start_mix`; all cash is the default (and draws no random numbers).
START_STATES = ("cash", "regime", "equal")


@dataclass(frozen=True)
class MarketTensors:
    """What the env reads, precomputed once for the whole panel (host-side numpy, float64)."""

    dates: pd.DatetimeIndex
    assets: tuple[str, ...]
    features: np.ndarray   # (T, market feature slots) of the feature sets, in their order
    feature_sets: tuple[str, ...]
    pre_drift: np.ndarray  # (T, n) trade price of decision t / close t
    post_drift: np.ndarray  # (T, n) close t+1 / trade price of decision t
    bench_return: np.ndarray  # (T,) equal-weight close-to-close return from t to t+1
    first_decision: int    # first row with full feature history inside the requested period
    execution: str

    @property
    def n_days(self) -> int:
        return len(self.dates)

    @property
    def last_decision(self) -> int:
        """Last row a decision can be taken on (its outcome needs day t+1)."""
        return self.n_days - 2


def prepare_market(close: pd.DataFrame, open_: pd.DataFrame | None = None, execution: str = "next_open",
                   first_decision: int = 0, features: Sequence[str] = DEFAULT_FEATURES,
                   signals: pd.DataFrame | None = None) -> MarketTensors:
    """Turn aligned price frames (dates x assets) into features, drift factors and benchmark returns.

    `first_decision` is the first row decisions may be taken on: at least the feature sets' warm-up,
    later when the rows before it are history that precedes the requested period. `signals`: closes
    of the signal tickers the feature sets read (dates x tickers, on `close`'s dates), never traded.
    """
    check_execution(execution)
    if execution == "next_open" and open_ is None:
        raise RLTraderError("next_open execution needs open prices")
    close_np = close.to_numpy(np.float64)
    T, n = close_np.shape
    pre = np.ones((T, n))
    post = np.ones((T, n))
    if execution == "next_open":
        open_np = open_.to_numpy(np.float64)
        pre[:-1] = open_np[1:] / close_np[:-1]
        post[:-1] = close_np[1:] / open_np[1:]
    else:
        post[:-1] = close_np[1:] / close_np[:-1]
    bench = np.zeros(T)
    bench[:-1] = (close_np[1:] / close_np[:-1]).mean(axis=1) - 1.0
    return MarketTensors(dates=close.index, assets=tuple(close.columns),
                         features=market_features(close, features, signals), feature_sets=tuple(features),
                         pre_drift=pre, post_drift=post, bench_return=bench,
                         first_decision=max(feature_warmup(features), first_decision), execution=execution)


def prepare_training_market(data: MarketData, execution: str,
                            features: Sequence[str] = DEFAULT_FEATURES) -> MarketTensors:
    """The env's view of a loaded panel: decisions start where the requested period starts; the
    panel's signal columns feed the feature sets, its tickers are what is traded."""
    return prepare_market(data.close, data.open, execution, data.history_rows(), features, data.signal_close)


class MarketEnv:
    """Batched regime-allocation environment (see the module docstring)."""

    def __init__(self, market: MarketTensors, regimes: RegimeTable, *, n_envs: int,
                 episode_length: int, fees: float = 0.001, slippage: float = 0.0,
                 reward_scale: float = 100.0, obs_dim: int = 64, seed: int = 0,
                 device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                 start_mix: Mapping[str, float] | None = None, drawdown_window: int = 0,
                 risk: RiskSettings | None = None) -> None:
        if tuple(regimes.assets) != tuple(market.assets):
            raise RLTraderError(f"regime table assets {regimes.assets} differ from the data's {market.assets}")
        self.market, self.regimes = market, regimes
        self.n_envs, self.episode_length = n_envs, episode_length
        self.fees, self.slippage, self.reward_scale = float(fees), float(slippage), float(reward_scale)
        self.device, self.dtype = torch.device(device), dtype
        self.layout = observation_layout(market.assets, regimes.names, obs_dim, market.feature_sets)
        self.obs_dim = len(self.layout)  # obs_dim is a minimum: grown to what the feature sets need
        self.n_assets = len(market.assets)
        self.max_start = market.last_decision - episode_length + 1
        if self.max_start < market.first_decision:
            raise RLTraderError(
                f"episode_length {episode_length} does not fit in the {market.last_decision - market.first_decision + 1}"
                f" decision days from {market.dates[market.first_decision].date()} to {market.dates[-1].date()}")

        n, f = self.n_assets, market.features.shape[1]
        to = dict(device=self.device, dtype=dtype)
        padded = np.zeros((market.n_days, self.obs_dim))
        padded[:, :f] = market.features
        self._obs_market = torch.as_tensor(padded, **to)
        # One gather per step fetches [pre_drift | post_drift | 1 + bench_return] of the day.
        self._step_data = torch.as_tensor(
            np.concatenate([market.pre_drift, market.post_drift, 1.0 + market.bench_return[:, None]], axis=1), **to)
        # Per action: target weights and a last column 1.0 = place orders, 0.0 = HOLD.
        weights = np.nan_to_num(regimes.weights, nan=0.0)
        trades = (np.arange(regimes.n_actions) != HOLD).astype(float)[:, None]
        self._actions_table = torch.as_tensor(np.concatenate([weights, trades], axis=1), **to)
        self._ones = torch.ones(n, **to)
        self._minus5 = torch.full((n_envs,), -5.0, **to)
        self._false = torch.zeros(n_envs, dtype=torch.bool, device=self.device)
        self._true = torch.ones(n_envs, dtype=torch.bool, device=self.device)
        self._w_slice = slice(f, f + n + 1)
        self._dd_index = f + n + 1
        self._act_slice = slice(f + n + 2, f + n + 2 + regimes.n_actions)
        self._start_weights, self._start_cdf = self._start_table(start_mix or {"cash": 1.0})
        if drawdown_window < 0:
            raise RLTraderError(f"drawdown_window must be >= 0 (0 = the episode's peak), got {drawdown_window}")
        self.drawdown_window = drawdown_window
        self.overlay = None  # risk overlays (rl_strategy/risk.py); the limits are the policy's action mask
        if risk is not None and risk.overlays:
            if risk.drawdown_brake is not None and not drawdown_window:
                raise RLTraderError("risk.drawdown_brake needs drawdown_window > 0 (the trailing peak it is measured from)")
            self.overlay = RiskOverlay(risk, market.pre_drift * market.post_drift, regimes, market.first_decision,
                                       self.device, dtype)

        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)
        self.reset()

    def _start_table(self, mix: Mapping[str, float]) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Candidate start weights [cash, *regimes holding assets, EQ_WEIGHT] and their cumulative
        probabilities; (None, None) for all cash, so that reset draws nothing."""
        unknown = sorted(set(mix) - set(START_STATES))
        p = [float(mix.get(k, 0.0)) for k in START_STATES]
        if unknown or min(p) < 0 or abs(sum(p) - 1.0) > 1e-9:
            raise RLTraderError(f"start_mix needs weights >= 0 summing to 1 over {', '.join(START_STATES)},"
                                f" got {dict(mix)}")
        if p[1] == 0.0 and p[2] == 0.0:
            return None, None
        n = self.n_assets
        weights = np.nan_to_num(self.regimes.weights, nan=0.0)
        invested = weights[weights.sum(axis=1) > 0]
        table = np.vstack([np.zeros(n), invested, np.full(n, 1.0 / n)])
        cdf = np.cumsum(np.concatenate([[p[0]], np.full(len(invested), p[1] / len(invested)), [p[2]]]))
        cdf[cdf >= cdf[-1]] = 1.0  # the last candidate with a positive probability ends at exactly 1
        return (torch.as_tensor(table, device=self.device, dtype=self.dtype),
                torch.as_tensor(cdf, device=self.device, dtype=torch.float64))

    # -- episode control --------------------------------------------------------------------
    def reset(self, starts: torch.Tensor | None = None, initial: torch.Tensor | None = None) -> torch.Tensor:
        """Start new episodes (random first days unless `starts` is given) with value 1 at the close
        before the first decision: `initial` (B, n_assets) weights held since that close (cash = 1 - row
        sum; no cost: the account already holds them), drifted to the first close; without `initial`,
        a start state drawn per env from the start mix (all cash by default)."""
        if starts is None:
            starts = torch.randint(self.market.first_decision, self.max_start + 1, (self.n_envs,),
                                   generator=self.generator, device=self.device)
        if initial is None and self._start_weights is not None:
            # Inverse CDF: one uniform per env, all on the device (multinomial's input checks sync
            # with the host in some torch versions).
            u = torch.rand(self.n_envs, generator=self.generator, device=self.device, dtype=torch.float64)
            initial = self._start_weights.index_select(0, torch.searchsorted(self._start_cdf, u, right=True))
        # Fresh tensors (not in-place fills): the finished episode's tensors may live on in `info`.
        B, to = self.n_envs, dict(device=self.device, dtype=self.dtype)
        self.start = starts.to(self.device, torch.long)
        self.step_in_episode = 0
        if initial is None:
            self.holdings = torch.zeros(B, self.n_assets, **to)
            self.cash = torch.ones(B, **to)
            self.value = torch.ones(B, **to)
            self.peak = torch.ones(B, **to)
        else:
            n = self.n_assets
            before = self._step_data.index_select(0, self.start - 1)  # close(t-1) -> close(t) = pre * post
            initial = initial.to(**to)
            self.holdings = initial * before[:, :n] * before[:, n:2 * n]
            self.cash = 1.0 - initial.sum(dim=1)
            self.value = torch.addmv(self.cash, self.holdings, self._ones)
            self.peak = torch.clamp(self.value, min=1.0)
        if self.drawdown_window:  # ring buffer of the last closes' values, slot = step_in_episode % window
            self.recent_values = torch.ones(B, self.drawdown_window, **to)
            self.recent_values[:, 0] = self.value
            self.peak = self.recent_values.amax(dim=1)
        self.prev_action = torch.zeros(B, dtype=torch.long, device=self.device)
        self.episode_return = torch.zeros(B, **to)
        if self.overlay is not None:
            self.overlay.reset(B, self.device)
        return self._observe(self.start)

    def _observe(self, day: torch.Tensor) -> torch.Tensor:
        obs = self._obs_market.index_select(0, day)
        # Written in place through `out=` views: fewer kernel launches per step.
        torch.div(torch.cat([self.cash.unsqueeze(1), self.holdings], dim=1), self.value.unsqueeze(1),
                  out=obs[:, self._w_slice])
        torch.addcdiv(self._minus5, self.value, self.peak, value=5.0, out=obs[:, self._dd_index])  # 5 * drawdown
        # The one-hot slots are zero in the gathered rows: set one 1.0 per env.
        obs.scatter_(1, self.prev_action.unsqueeze(1) + self._act_slice.start, 1.0)
        return obs

    @property
    def day(self) -> torch.Tensor:
        """Index of each env's current decision day. Clamped at the last decision day, so a replay
        may run paths of different lengths together (results past a path's end are discarded)."""
        return torch.clamp(self.start + self.step_in_episode, max=self.market.last_decision)

    # -- the step -------------------------------------------------------------------------------
    def step(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, dict]:
        """Apply one decision per env; returns (obs, reward, terminated, truncated, info)."""
        n = self.n_assets
        day = self.day
        data = self._step_data.index_select(0, day)
        pre, post, one_plus_bench = data[:, :n], data[:, n:2 * n], data[:, 2 * n]

        order = self._actions_table.index_select(0, actions)
        target, trade = order[:, :n], order[:, n:]
        if self.overlay is not None:  # decided at day t's close, from the weights held then
            held = self.holdings / self.value.unsqueeze(1)
            target, trade = self.overlay.targets(day, actions, target, trade, held, self.value, self.peak)
        self.last_target, self.last_trade = target, trade  # what was ordered (replay hands it to vectorbt)
        holdings = self.holdings * pre  # drift from day t's close to the trade price
        holdings, cash = rebalance(holdings, self.cash, target, trade, self.fees, self.slippage)
        holdings = holdings * post  # drift from the trade price to day t+1's close
        value = torch.addmv(cash, holdings, self._ones)
        reward = (value / self.value - one_plus_bench) * self.reward_scale

        self.holdings, self.cash = holdings, cash
        self.prev_action = actions
        self.episode_return += reward
        self.step_in_episode += 1
        self.value = value
        if self.drawdown_window:
            self.recent_values[:, self.step_in_episode % self.drawdown_window] = value
            self.peak = self.recent_values.amax(dim=1)
        else:
            self.peak = torch.maximum(self.peak, value)

        info: dict = {}
        done = self.step_in_episode == self.episode_length
        obs = self._observe(day + 1)
        if done:
            info["final_obs"] = obs
            info["episode_return"] = self.episode_return.clone()
            info["final_value"] = value
            obs = self.reset()
        # Constant flags (never written to): episodes end together, and never terminate.
        return obs, reward, self._false, self._true if done else self._false, info

    # -- resume ---------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """A snapshot: the tensors that `step` writes in place are copied."""
        state = {"start": self.start, "holdings": self.holdings, "cash": self.cash, "value": self.value,
                 "peak": self.peak, "prev_action": self.prev_action, "episode_return": self.episode_return.clone(),
                 "step_in_episode": self.step_in_episode, "generator": self.generator.get_state()}
        if self.drawdown_window:
            state["recent_values"] = self.recent_values.clone()
        if self.overlay is not None:
            state["overlay"] = self.overlay.state()
        return state

    def load_state_dict(self, state: dict) -> None:
        keys = ("start", "holdings", "cash", "value", "peak", "prev_action", "episode_return")
        for key in keys + (("recent_values",) if self.drawdown_window else ()):
            setattr(self, key, state[key].to(self.device, copy=True))  # never shared with another env
        self.step_in_episode = int(state["step_in_episode"])
        self.generator.set_state(state["generator"])
        if self.overlay is not None:
            self.overlay.load_state(state["overlay"], self.device)
