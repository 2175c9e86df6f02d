"""The trained policy as a vectorbt allocation strategy.

`RLPolicy.run` replays the policy over a price panel with the training environment itself
(same features, regime table and cost accounting), one decision per day from data up to that
day's close, running the GRU once through the period. `RLPolicy.paths` runs several paths at once
(greedy and sampled readouts, rolling origins) in one batched environment. Its observation includes the portfolio's
own drifted weights (and the risk overlays read the account's state), which is why decisions are made by stepping the environment rather than
by a pure function of prices. The result is a weights DataFrame (NaN rows = HOLD) that
`rl_strategy.portfolio.simulate_portfolio` turns into a `vbt.Portfolio`, and the environment's
own equity curve, which must agree with vectorbt's (the backtest reports the difference).

The features are rebuilt from the checkpoint's own settings (`env.features`), and the layout they
give must equal the one stored in the checkpoint. Feature sets that read signal tickers (^VIX,
TLT, ...) need their closes: `signals=` a frame with those columns on the prices' dates, e.g.
`load_market(..., signals=list(policy.signal_tickers)).signal_close`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from rl_strategy.checkpoint import Checkpoint, load_checkpoint, resolve_model_path
from rl_strategy.env import prepare_market
from rl_strategy.errors import RLTraderError
from rl_strategy.features import feature_warmup, observation_layout, signal_tickers
from rl_strategy.regimes import RegimeTable, build_regime_table
from rl_strategy.replay import Paths, replay
from rl_strategy.risk import policy_mask
from rl_strategy.settings import RiskSettings


@dataclass(frozen=True)
class PolicyRun:
    weights: pd.DataFrame   # dates x assets, the target on each decision day, NaN rows = HOLD / no decision
    actions: pd.Series      # regime name per decision day ("" where no decision was taken)
    equity: pd.Series       # the environment's portfolio value at each close, 1.0 before the first decision
    first_decision: pd.Timestamp


@dataclass(frozen=True)
class PolicyPaths:
    """Several paths of one policy over one panel (see `rl_strategy.replay`), as frames.

    `weights` has columns (path, asset), NaN outside a path's decisions and on HOLD days, ready
    for `simulate_portfolio`; `initial` has the same columns, with each path's starting weights on
    the row before its first decision (for `simulate_portfolio(initial=...)`); `equity` is the
    environment's value per path, 1 at the close before the path's first decision, NaN outside.
    """

    names: list[str]
    weights: pd.DataFrame
    initial: pd.DataFrame
    actions: pd.DataFrame   # dates x path: regime name of each decision ("" elsewhere)
    equity: pd.DataFrame
    entropy: pd.DataFrame   # dates x path, NaN outside the path's decisions
    max_prob: pd.DataFrame
    first_rows: np.ndarray
    lengths: np.ndarray


class RLPolicy:
    """A checkpoint ready for inference: `RLPolicy.load("checkpoints/x/model_final_*.pt")`."""

    def __init__(self, checkpoint: Checkpoint, device: str = "cpu") -> None:
        self.checkpoint = checkpoint
        self.device = device
        self.net = checkpoint.policy(device)
        self.regimes: RegimeTable = build_regime_table(checkpoint.assets, checkpoint.settings.regimes.families)
        if self.regimes.names != checkpoint.spec.regime_names:
            raise RLTraderError(f"checkpoint {checkpoint.path.name} uses another regime table than this version builds")
        env = checkpoint.settings.env
        #: the risk limits and overlays it was trained with: one rule in training, replay and backtest
        self.risk: RiskSettings = checkpoint.settings.risk
        mask = policy_mask(self.regimes, self.risk)
        stored = self.checkpoint.model_state.get("action_mask") if not checkpoint.is_ensemble else mask
        if (mask is None) != (stored is None) or (mask is not None and not np.array_equal(mask, np.asarray(stored))):
            raise RLTraderError(f"checkpoint {checkpoint.path.name}: its action mask does not match its risk limits")
        self.execution: str = env.execution
        self.fees: float = env.fees
        self.slippage: float = env.slippage
        self.features: tuple[str, ...] = tuple(env.features)
        self.warmup: int = feature_warmup(self.features)  # rows of history before the first decision
        #: signal ticker -> the feature set that reads it: the closes `run`/`paths` need as `signals`
        self.signal_tickers: dict[str, str] = signal_tickers(self.features, checkpoint.assets)
        spec = checkpoint.spec
        if tuple(observation_layout(spec.assets, self.regimes.names, spec.obs_dim, self.features)) != spec.layout:
            raise RLTraderError(f"checkpoint {checkpoint.path.name}: its feature sets ({', '.join(self.features)}) give "
                                "another observation layout in this version than the one it was trained on")

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> RLPolicy:
        """A checkpoint or a seed ensemble checkpoint (path or glob): both run as one policy."""
        return cls(load_checkpoint(resolve_model_path(str(path))), device)

    @property
    def assets(self) -> tuple[str, ...]:
        return self.checkpoint.assets

    def run(self, close: pd.DataFrame, open_: pd.DataFrame | None = None, *, start=None,
            execution: str | None = None, fees: float | None = None, slippage: float | None = None,
            sample: bool = False, seed: int = 0, initial: str | np.ndarray = "cash", signals: pd.DataFrame | None = None) -> PolicyRun:
        """Replay the policy over the panel; decisions from `start` (or the first day with a full
        feature history) to the second-to-last day. Costs and timing default to the checkpoint's."""
        paths = self.paths(close, open_, names=["RL"], starts=[start], sample=[sample], seeds=[seed], initial=initial,
                           execution=execution, fees=fees, slippage=slippage, signals=signals)
        first = int(paths.first_rows[0])
        equity = paths.equity["RL"].copy()
        equity.iloc[:first] = 1.0
        return PolicyRun(weights=paths.weights["RL"], actions=paths.actions["RL"].rename("regime"),
                         equity=equity.rename("equity"), first_decision=close.index[first])

    def paths(self, close: pd.DataFrame, open_: pd.DataFrame | None = None, *, names: list[str], starts: list,
              sample: list[bool], seeds: list[int], horizons: list[int | None] | None = None,
              initial: str | np.ndarray = "cash",
              execution: str | None = None, fees: float | None = None, slippage: float | None = None,
              signals: pd.DataFrame | None = None) -> PolicyPaths:
        """Several paths in one batched run. `starts[i]`: a date (its first row on or after it), or None
        for the first day with a full feature history; path i decides on up to `horizons[i]` days (None:
        to the second-to-last day of the panel). `initial`: "cash", a regime name, asset weights (cash = 1 - sum)
        held at the start, or one row of weights per path (e.g. the holdings each account ended a period with).
        `signals`: closes of `signal_tickers` on the prices' dates (needed only when the features read them)."""
        close = self._frame(close, "close")
        open_ = self._frame(open_, "open") if open_ is not None else None
        execution = execution or self.execution
        w = self.warmup
        rows = np.array([w if s is None else max(w, int(close.index.searchsorted(pd.Timestamp(s)))) for s in starts],
                        dtype=np.int64)
        market = prepare_market(close, open_, execution, int(rows.min()), self.features,
                                self._signals(signals, close.index))
        if rows.max() > market.last_decision:
            raise RLTraderError(f"no decision day left after {close.index[int(rows.max()) - 1].date()} in the panel")
        lengths = market.last_decision - rows + 1
        if horizons is not None:
            lengths = np.array([n if h is None else min(n, h) for n, h in zip(lengths, horizons, strict=True)])
        start_w = self.start_weights(initial, len(rows))
        result = replay(self.net, market, self.regimes, starts=rows, lengths=lengths, sample=np.asarray(sample),
                        seeds=np.asarray(seeds), initial=start_w if start_w.any() else None,
                        fees=self.fees if fees is None else fees,
                        slippage=self.slippage if slippage is None else slippage,
                        obs_dim=self.checkpoint.spec.obs_dim, device=self.device,
                        drawdown_window=self.checkpoint.settings.env.drawdown_window, risk=self.risk)
        return self._frames(close, names, result, start_w)

    def overlay(self, close: pd.DataFrame, open_: pd.DataFrame | None, weights: pd.DataFrame, starts: list[int], *,
                initial: str | np.ndarray = "cash", execution: str | None = None, fees: float | None = None,
                slippage: float | None = None, signals: pd.DataFrame | None = None) -> pd.DataFrame:
        """Other policies' orders as this policy's risk overlays would place them (a fair comparison).

        `weights`: columns (path, asset) as `simulate_portfolio` takes them, NaN rows = no order; path i
        decides from row `starts[i]` to the panel's second-to-last row, from `initial`. Each path runs
        through the environment with the checkpoint's overlays (volatility target, drawdown brake,
        rebalance band; the limits mask only the policy's own choices), and the orders it placed
        come back in the same layout."""
        close = self._frame(close, "close")
        open_ = self._frame(open_, "open") if open_ is not None else None
        T, n = len(close), len(self.assets)
        names = list(dict.fromkeys(weights.columns.get_level_values(0)))
        arr = weights[names].to_numpy(np.float64).reshape(T, len(names), n)
        ordered = ~np.isnan(arr).any(axis=2)
        rows, ids = np.unique(arr[ordered], axis=0, return_inverse=True)
        table = RegimeTable(assets=self.assets, names=("HOLD", *[f"W{k}" for k in range(len(rows))]),
                            weights=np.vstack([np.full((1, n), np.nan), rows]))
        actions = np.zeros((T, len(names)), dtype=np.int64)
        actions[ordered] = ids.ravel() + 1
        starts = np.asarray(starts, dtype=np.int64)
        market = prepare_market(close, open_, execution or self.execution, int(starts.min()), self.features,
                                self._signals(signals, close.index))
        lengths = market.last_decision - starts + 1
        forced = np.zeros((int(lengths.max()), len(names)), dtype=np.int64)
        for i, (s, L) in enumerate(zip(starts, lengths, strict=True)):
            forced[:L, i] = actions[s:s + L, i]
        start_w = self.start_weights(initial, len(names))
        result = replay(None, market, table, starts=starts, lengths=lengths, sample=np.zeros(len(names), bool),
                        seeds=np.zeros(len(names), np.int64),
                        initial=start_w if start_w.any() else None,
                        fees=self.fees if fees is None else fees, slippage=self.slippage if slippage is None else slippage,
                        obs_dim=self.checkpoint.spec.obs_dim, device=self.device, forced=forced,
                        drawdown_window=self.checkpoint.settings.env.drawdown_window, risk=self.risk)
        out = np.full((T, len(names), n), np.nan)
        for i, (s, L) in enumerate(zip(starts, lengths, strict=True)):
            out[s:s + L, i] = result.targets[:L, i]
        return pd.DataFrame(out.reshape(T, len(names) * n), index=close.index, columns=weights[names].columns)

    def start_weights(self, initial: str | np.ndarray, n_paths: int) -> np.ndarray:
        """(n_paths, n_assets) starting asset weights: "cash", a regime name, one weight vector for every
        path, or one row per path (e.g. the holdings each path's account ended a previous period with)."""
        n = len(self.assets)
        if isinstance(initial, str):
            return np.tile(self.regimes.initial_weights(initial), (n_paths, 1))
        w = np.asarray(initial, dtype=np.float64)
        w = np.tile(w, (n_paths, 1)) if w.ndim == 1 else w
        if w.shape != (n_paths, n) or not np.isfinite(w).all() or (w < 0).any() or (w.sum(axis=1) > 1 + 1e-9).any():
            raise RLTraderError(f"initial weights must be {n} finite weights >= 0 summing to <= 1 (one per asset: "
                                f"{', '.join(self.assets)}), or one such row per path; got shape {w.shape}")
        return w

    def _frames(self, close: pd.DataFrame, names: list[str], r: Paths, start_w: np.ndarray) -> PolicyPaths:
        T, n, B = len(close), len(self.assets), len(names)
        weights = np.full((T, B, n), np.nan)
        initial = np.full((T, B, n), np.nan)
        regime = np.full((T, B), "", dtype=object)
        equity, entropy, max_prob = np.full((T, B), np.nan), np.full((T, B), np.nan), np.full((T, B), np.nan)
        labels = np.asarray(self.regimes.names, dtype=object)
        for i in range(B):  # per path: array slices only, no per-day work
            s, L = int(r.starts[i]), int(r.lengths[i])
            acts = r.actions[:L, i]
            weights[s:s + L, i] = r.targets[:L, i]
            regime[s:s + L, i] = labels[acts]
            initial[s - 1, i] = start_w[i]
            equity[s:s + L + 1, i] = r.values[:L + 1, i]
            entropy[s:s + L, i], max_prob[s:s + L, i] = r.entropy[:L, i], r.max_prob[:L, i]
        cols = pd.MultiIndex.from_product([names, list(self.assets)], names=["path", "asset"])
        index = close.index
        frame = lambda a: pd.DataFrame(a, index=index, columns=names)  # noqa: E731
        return PolicyPaths(names=names, weights=pd.DataFrame(weights.reshape(T, B * n), index=index, columns=cols),
                           initial=pd.DataFrame(initial.reshape(T, B * n), index=index, columns=cols),
                           actions=frame(regime), equity=frame(equity), entropy=frame(entropy),
                           max_prob=frame(max_prob), first_rows=r.starts, lengths=r.lengths)

    def target_weights(self, close: pd.DataFrame, open_: pd.DataFrame | None = None, **kwargs) -> pd.DataFrame:
        """Dates x assets target weights (CASH = 1 - sum); NaN rows where the policy holds."""
        return self.run(close, open_, **kwargs).weights

    def _signals(self, signals: pd.DataFrame | None, index: pd.DatetimeIndex) -> pd.DataFrame | None:
        """The signal closes the feature sets read, on the prices' dates (None when they read none)."""
        need = list(self.signal_tickers)
        if not need:
            return None
        missing = need if not isinstance(signals, pd.DataFrame) else [t for t in need if t not in signals.columns]
        if missing:
            sets = ", ".join(dict.fromkeys(self.signal_tickers[t] for t in missing))
            raise RLTraderError(f"checkpoint {self.checkpoint.path.name} reads {', '.join(missing)} (feature sets {sets}): "
                                "pass their closes as signals= (a DataFrame on the prices' dates)")
        frame = signals[need].reindex(index).astype(np.float64)
        values = frame.to_numpy()
        if not np.isfinite(values).all() or (values <= 0).any():
            raise RLTraderError(f"signal closes {', '.join(need)} must be positive and finite on every date of the "
                                "prices (load them with load_market(..., signals=...))")
        return frame

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
