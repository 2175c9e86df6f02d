"""Typed, validated settings: the one schema of a run, shared by training, checkpoints and backtests.

Every key of a YAML config (`training/configs/*.yaml`, read by `training.config.load_settings`)
maps to a dataclass field below; an unknown key, a wrong type or an out-of-range value is a
one-line `RLTraderError`. A checkpoint stores `Settings.to_dict()` and gives back the same typed
object. Precedence is CLI flag > config file > the defaults below, applied by `apply_cli`, the one
function every command uses (it also holds the rule "--csv-dir implies the csv source").
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from rl_strategy.data import SOURCES
from rl_strategy.errors import RLTraderError
from rl_strategy.features import FEATURE_SETS, feature_warmup, signal_tickers
from rl_strategy.portfolio import check_execution
from rl_strategy.regimes import REGIME_FAMILIES


@dataclass
class DataSettings:
    tickers: list[str] = field(default_factory=lambda: ["SPY", "QQQ", "IWM"])
    source: str = "synthetic"
    csv_dir: str | None = None
    cache_dir: str = "data/cache"
    cache_path: str | None = None  # a tensor cache written by `rltrader data fetch --cache-out`
    seed: int = 0                      # synthetic market seed


@dataclass
class PeriodSettings:
    train_start: str = "2015-01-01"
    train_end: str = "2019-12-31"
    test_start: str = "2020-01-01"
    test_end: str = "2024-12-31"
    # Validation window (both or neither): inside the training window or right after it, never
    # overlapping the test window. Training decisions stop before val_start.
    val_start: str | None = None
    val_end: str | None = None


@dataclass
class EnvSettings:
    execution: str = "next_open"   # next_open | close
    fees: float = 0.001
    slippage: float = 0.0
    episode_length: int = 256
    reward_scale: float = 100.0
    obs_dim: int = 64
    # Episode start states (probabilities, sum 1): all cash, a uniformly drawn regime that holds assets
    # (any but HOLD and ALL_CASH), or EQ_WEIGHT; the names of the backtest's --initial.
    start_cash: float = 1.0
    start_regime: float = 0.0
    start_equal: float = 0.0
    drawdown_window: int = 0  # drawdown observed from the peak of the last N closes; 0 = the episode's peak
    # Observation feature sets, in order (rl_strategy/features.py): core, vix, rates, cross_asset, trend, calendar.
    features: list[str] = field(default_factory=lambda: ["core"])

    @property
    def start_mix(self) -> dict[str, float]:
        return {"cash": self.start_cash, "regime": self.start_regime, "equal": self.start_equal}


@dataclass
class RegimeSettings:
    """Which families of the regime rule build the action table (rl_strategy/regimes.py). HOLD and
    ALL_CASH are always in it; the default is every family, the v2 table."""

    families: list[str] = field(default_factory=lambda: list(REGIME_FAMILIES))


@dataclass
class RiskSettings:
    """Hard limits and overlays, one rule in training, replay and the backtest (rl_strategy/risk.py).
    The defaults constrain nothing (the v2 behaviour)."""

    max_asset_weight: float = 1.0   # regimes with a target weight above this in any asset are masked out
    min_cash: float = 0.0           # regimes with less cash than this are masked out
    max_gross: float = 1.0          # regimes with more than this in assets are masked out
    vol_target: float | None = None  # annualised; scales a regime's asset weights by min(1, target / trailing vol)
    vol_window: int = 20            # closes of the trailing volatility (up to the decision day)
    rebalance_band: float = 0.0     # no order when every target weight is within this of the weight held
    drawdown_brake: float | None = None  # from env.drawdown_window's trailing peak: above it, exposure is capped
    brake_exposure: float = 0.5     # the cap on the asset weights while the brake is on
    brake_release: float = 0.0      # the brake comes off when the drawdown is back at or below this

    @property
    def masks(self) -> bool:
        return self.max_asset_weight < 1.0 or self.min_cash > 0.0 or self.max_gross < 1.0

    @property
    def overlays(self) -> bool:
        return self.vol_target is not None or self.drawdown_brake is not None or self.rebalance_band > 0.0


@dataclass
class PPOSettings:
    n_envs: int = 2048
    n_steps: int = 32
    epochs: int = 4
    minibatches: int = 8
    learning_rate: float = 3e-4
    anneal_lr: bool = True
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_coef: float = 0.2
    clip_vloss: bool = True
    ent_coef: float = 0.01
    ent_coef_end: float | None = None  # linear decay from ent_coef to this over the run; None = constant
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    target_kl: float | None = None
    norm_adv: bool = True
    hidden: int = 128


@dataclass
class RunSettings:
    timesteps: int = 5_000_000
    seed: int = 1
    device: str = "auto"
    out: str = "checkpoints/rl_v2"
    checkpoint_every: int = 10  # updates between periodic checkpoints
    eval_every: int = 5         # updates between validation evaluations (when periods has a validation window)
    patience: int | None = None  # stop after this many evaluations without a better validation score
    eval_samples: int = 8       # sampled paths per validation origin
    eval_horizon_days: int = 126  # decision days per validation origin (origins whose horizon fits the window)


@dataclass
class CriteriaSettings:
    """The v2 regression gate (backtest): thresholds only, the checks live in backtests/criteria.py."""

    min_sharpe: float = 0.0
    max_sharpe_gap_to_spy: float = 0.5  # the gap to `reference`'s Sharpe (the key keeps its v2 name)
    max_turnover: float = 0.5
    max_rank: int = 4
    # rl_greedy_representative: the greedy path's Sharpe percentile among the sampled paths
    greedy_percentile_min: float = 5.0
    greedy_percentile_max: float = 95.0
    # The Sharpe reference of the gap criterion: a baseline name (ALL_SPY, EQ_BUY_HOLD, ...) or a ticker
    # outside the universe, loaded as a comparison-only buy-and-hold with the same costs.
    reference: str = "ALL_SPY"


@dataclass
class Settings:
    data: DataSettings = field(default_factory=DataSettings)
    periods: PeriodSettings = field(default_factory=PeriodSettings)
    env: EnvSettings = field(default_factory=EnvSettings)
    regimes: RegimeSettings = field(default_factory=RegimeSettings)
    risk: RiskSettings = field(default_factory=RiskSettings)
    ppo: PPOSettings = field(default_factory=PPOSettings)
    run: RunSettings = field(default_factory=RunSettings)
    criteria: CriteriaSettings = field(default_factory=CriteriaSettings)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """Check one YAML value against a field's type; ints are accepted for floats."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        (inner,) = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _coerce(value, inner, key)
    if origin is list:
        if not isinstance(value, list):
            raise RLTraderError(f"config: {key} must be a list, got {value!r}")
        (inner,) = typing.get_args(annotation)
        return [_coerce(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation is str and isinstance(value, dt.date):
        return value.isoformat()  # YAML reads 2015-01-01 as a date
    if annotation is int and isinstance(value, bool) or not isinstance(value, annotation):
        raise RLTraderError(f"config: {key} must be {annotation.__name__}, got {value!r}")
    return value


def _build(cls: type, raw: dict, prefix: str) -> Any:
    if not isinstance(raw, dict):
        raise RLTraderError(f"config: {prefix or 'the file'} must be a mapping")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(raw) - set(names))
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise RLTraderError(f"config: unknown key {where}{unknown[0]} (known: {', '.join(names)})")
    kwargs = {}
    for name, value in raw.items():
        key = f"{prefix}.{name}" if prefix else name
        if dataclasses.is_dataclass(hints[name]):
            kwargs[name] = _build(hints[name], value, key)
        else:
            kwargs[name] = _coerce(value, hints[name], key)
    return cls(**kwargs)


def build_settings(raw: dict) -> Settings:
    """Settings from a nested mapping, types checked; ranges are checked by `validate`/`override`."""
    return _build(Settings, raw, "")


def validate(s: Settings) -> Settings:
    """Range checks that types alone cannot express."""
    def need(ok: bool, msg: str) -> None:
        if not ok:
            raise RLTraderError(f"config: {msg}")

    need(len(s.data.tickers) > 0 and len(set(s.data.tickers)) == len(s.data.tickers),
         "data.tickers must be a non-empty list without duplicates")
    need(s.data.source in SOURCES, f"data.source must be one of {', '.join(SOURCES)}, got {s.data.source!r}")
    need(s.data.source != "csv" or s.data.csv_dir is not None, "data.source csv needs data.csv_dir (or --csv-dir)")
    p = s.periods
    pairs = [("train_start", "train_end"), ("test_start", "test_end")]
    need((p.val_start is None) == (p.val_end is None), "periods.val_start and periods.val_end go together")
    if p.val_start is not None:
        pairs.append(("val_start", "val_end"))
    for a, b in pairs:
        try:
            ok = dt.date.fromisoformat(getattr(p, a)) < dt.date.fromisoformat(getattr(p, b))
        except ValueError as exc:
            raise RLTraderError(f"config: periods.{a}/{b} must be YYYY-MM-DD dates ({exc})") from None
        need(ok, f"periods.{a} must be before periods.{b}")
    if p.val_start is not None:
        day = dt.date.fromisoformat
        need(day(p.train_start) < day(p.val_start) <= day(p.train_end) + dt.timedelta(days=7),
             "periods.val_start must lie inside the training window or right after it")
        need(day(p.val_end) < day(p.test_start) or day(p.val_start) > day(p.test_end),
             "the validation window must not overlap the test window")
    check_execution(s.env.execution, "env.execution")
    need(0 <= s.env.fees < 0.1 and 0 <= s.env.slippage < 0.1, "env.fees and env.slippage must be in [0, 0.1)")
    need(s.env.episode_length >= 2, "env.episode_length must be >= 2")
    need(s.env.reward_scale > 0 and s.env.obs_dim > 0, "env.reward_scale and env.obs_dim must be > 0")
    mix = s.env.start_mix.values()
    need(min(mix) >= 0 and abs(sum(mix) - 1) <= 1e-9,
         f"env.start_cash, start_regime and start_equal must be >= 0 and sum to 1, got {tuple(mix)}")
    need(s.env.drawdown_window >= 0, "env.drawdown_window must be >= 0 (0 = the episode's peak)")
    f = s.env.features
    need(len(f) > 0 and len(set(f)) == len(f) and set(f) <= set(FEATURE_SETS),
         f"env.features must be distinct feature sets among {', '.join(FEATURE_SETS)}, got {f}")
    if s.data.source == "synthetic":
        from rl_strategy.synthetic import SUPPORTED_TICKERS

        for ticker, name in signal_tickers(f, s.data.tickers).items():
            need(ticker in SUPPORTED_TICKERS, f"feature set {name} needs {ticker}, which the synthetic market lacks "
                                              f"(it has {', '.join(SUPPORTED_TICKERS)}): use the csv or yahoo source")
    fam = s.regimes.families
    need(len(fam) > 0 and len(set(fam)) == len(fam) and set(fam) <= set(REGIME_FAMILIES),
         f"regimes.families must be one or more distinct families among {', '.join(REGIME_FAMILIES)}, got {fam}")
    r = s.risk
    need(0 < r.max_asset_weight <= 1 and 0 <= r.min_cash < 1 and 0 < r.max_gross <= 1,
         "risk.max_asset_weight and risk.max_gross must be in (0, 1], risk.min_cash in [0, 1)")
    need(r.vol_target is None or r.vol_target > 0, "risk.vol_target must be > 0 or null")
    need(2 <= r.vol_window <= feature_warmup(f),
         f"risk.vol_window must be in [2, {feature_warmup(f)}] (the feature sets' warm-up, so every decision has it)")
    need(0 <= r.rebalance_band < 1, "risk.rebalance_band must be in [0, 1)")
    if r.drawdown_brake is not None:
        need(0 < r.drawdown_brake < 1 and 0 <= r.brake_exposure < 1 and 0 <= r.brake_release < r.drawdown_brake,
             "risk.drawdown_brake must be in (0, 1), risk.brake_exposure in [0, 1), risk.brake_release in"
             " [0, drawdown_brake)")
        need(s.env.drawdown_window > 0, "risk.drawdown_brake needs env.drawdown_window > 0 (the trailing peak it"
                                        " is measured from, the same in training and backtest)")
    q = s.ppo
    need(q.n_envs >= 1 and q.n_steps >= 1 and q.epochs >= 1, "ppo.n_envs, n_steps and epochs must be >= 1")
    need(q.minibatches >= 1 and q.n_envs % q.minibatches == 0,
         f"ppo.minibatches ({q.minibatches}) must divide ppo.n_envs ({q.n_envs})")
    L, n = s.env.episode_length, q.n_steps
    need(L % n == 0 or n % L == 0,
         f"env.episode_length ({L}) must be a multiple or a divisor of ppo.n_steps ({n}) so whole-sequence"
         " minibatches never cross an episode start")
    need(0 < q.gamma <= 1 and 0 <= q.gae_lambda <= 1, "ppo.gamma must be in (0, 1] and ppo.gae_lambda in [0, 1]")
    need(q.learning_rate > 0 and q.clip_coef > 0 and q.max_grad_norm > 0,
         "ppo.learning_rate, clip_coef and max_grad_norm must be > 0")
    need(q.ent_coef >= 0 and q.vf_coef >= 0, "ppo.ent_coef and ppo.vf_coef must be >= 0")
    need(q.ent_coef_end is None or q.ent_coef_end >= 0, "ppo.ent_coef_end must be >= 0 or null")
    need(s.run.timesteps > 0, "run.timesteps must be > 0")
    need(s.run.device in ("auto", "cpu", "cuda") or s.run.device.startswith("cuda:"),
         f"run.device must be auto, cpu or cuda, got {s.run.device!r}")
    need(s.run.checkpoint_every >= 1, "run.checkpoint_every must be >= 1")
    need(s.run.eval_every >= 1 and s.run.eval_samples >= 1 and s.run.eval_horizon_days >= 2,
         "run.eval_every and run.eval_samples must be >= 1, run.eval_horizon_days >= 2")
    need(s.run.patience is None or s.run.patience >= 1, "run.patience must be >= 1")
    return s


def override(settings: Settings, overrides: dict[str, Any]) -> Settings:
    """Apply {"ppo.n_envs": 256, ...}; None values mean "flag not given" and are skipped."""
    raw = settings.to_dict()
    for key, value in overrides.items():
        if value is None:
            continue
        section, _, name = key.partition(".")
        if section not in raw or name not in raw[section]:
            raise RLTraderError(f"unknown setting {key}")
        raw[section][name] = value
    return validate(build_settings(raw))


#: CLI flag name -> settings key. Every command passes its flags through `apply_cli`.
CLI_KEYS = {
    "tickers": "data.tickers", "data_source": "data.source", "csv_dir": "data.csv_dir",
    "cache_dir": "data.cache_dir", "cache_path": "data.cache_path", "data_seed": "data.seed",
    "fees": "env.fees", "slippage": "env.slippage", "execution": "env.execution",
    "n_envs": "ppo.n_envs", "timesteps": "run.timesteps", "seed": "run.seed", "device": "run.device",
    "out": "run.out", "checkpoint_every": "run.checkpoint_every",
    "val_start": "periods.val_start", "val_end": "periods.val_end", "eval_every": "run.eval_every",
    "patience": "run.patience", "reference": "criteria.reference",
}


def apply_cli(settings: Settings, **flags: Any) -> Settings:
    """Settings with the given CLI flags on top (None = flag not given, the config's value stays).

    A `--csv-dir` without `--data-source` selects the csv source, in every command.
    """
    unknown = sorted(set(flags) - set(CLI_KEYS))
    if unknown:
        raise RLTraderError(f"unknown option {unknown[0]}")
    if flags.get("csv_dir") and not flags.get("data_source"):
        flags["data_source"] = "csv"
    if isinstance(flags.get("tickers"), str):
        flags["tickers"] = [t.strip() for t in flags["tickers"].split(",") if t.strip()]
    return override(settings, {CLI_KEYS[k]: v for k, v in flags.items()})


def settings_from_dict(raw: dict) -> Settings:
    """Rebuild settings stored in a checkpoint."""
    return validate(build_settings(raw))


def resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RLTraderError("--device cuda asked for but torch sees no CUDA device (install a CUDA build of torch)")
    return name
