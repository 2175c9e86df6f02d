"""Significance statistics of a walk-forward study, on per-period (daily) returns.

They are reported next to the results and never used to choose anything, so a selection made
on them cannot leak into the out-of-sample numbers.

- PSR, the probabilistic Sharpe ratio (Bailey & Lopez de Prado, 2012): the probability that
  the true per-period Sharpe exceeds a benchmark SR*, given the sample's length, skewness g3 and
  RAW (Pearson, normal = 3) kurtosis g4, both population moments:

      PSR(SR*) = Phi( (SR - SR*) * sqrt(T - 1) / sqrt(1 - g3 * SR + (g4 - 1) / 4 * SR^2) )

  (quantstats plugs in the excess kurtosis, which understates the variance term, so it is not
  used here.)
- DSR, the deflated Sharpe ratio (Bailey & Lopez de Prado, 2014): PSR against SR0, the Sharpe
  the best of N unskilled trials would be expected to reach by luck, given the variance V of the
  trials' per-period Sharpes:

      SR0 = sqrt(V) * ((1 - gamma) * Phi^-1(1 - 1/N) + gamma * Phi^-1(1 - 1/(N e)))

  With fewer than two trials there is no selection to deflate for: SR0 = 0 and DSR = PSR(0).
- A stationary-bootstrap percentile interval of the annualised Sharpe difference to the
  benchmark, both series resampled on the same dates so their correlation is kept.
- Hansen's SPA test (arch.bootstrap.SPA) on losses = -returns, in both directions (see
  `spa_pvalues`).

Sharpes here are mean / sample std of raw returns (no risk-free rate), per period unless the
name says annualised.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from arch.bootstrap import SPA, StationaryBootstrap, optimal_block_length
from scipy import stats

from rl_strategy.errors import RLTraderError

#: The Euler-Mascheroni constant of the expected-maximum formula.
EULER_GAMMA = 0.5772156649015329
#: Fewer aligned observations than this make the moments and the bootstrap meaningless.
MIN_OBSERVATIONS = 30
#: A one-dimensional sequence of per-period returns or Sharpes.
Returns1D = pd.Series | np.ndarray | list[float]


def _as_array(returns: Returns1D) -> np.ndarray:
    """A float 1-D copy of `returns`, so Series and arrays go through one code path."""
    values = np.asarray(returns, dtype=float)
    if values.ndim != 1:
        raise RLTraderError(f"expected a 1-D series of returns, got shape {values.shape}")
    return values


def sharpe_per_period(returns: Returns1D) -> float:
    """Mean over sample std (ddof=1), not annualised: the SR that PSR and DSR are defined on.
    NaN for fewer than two values or a zero std, where the ratio is undefined."""
    values = _as_array(returns)
    if values.size < 2:
        return math.nan
    std = float(np.std(values, ddof=1))
    if std == 0.0 or not math.isfinite(std):
        return math.nan
    return float(np.mean(values)) / std


def probabilistic_sharpe(returns: Returns1D, sr_benchmark: float = 0.0) -> float:
    """PSR: the probability that the true per-period Sharpe exceeds `sr_benchmark` (per period),
    correcting the standard error of SR for the sample's skewness and raw (non-excess) kurtosis.
    NaN where SR is undefined or the variance term under the root is not positive."""
    values = _as_array(returns)
    sr = sharpe_per_period(values)
    if not math.isfinite(sr) or not math.isfinite(sr_benchmark):
        return math.nan
    skew = float(stats.skew(values, bias=True))
    kurt = float(stats.kurtosis(values, fisher=False, bias=True))
    variance_term = 1.0 - skew * sr + (kurt - 1.0) / 4.0 * sr**2
    if not variance_term > 0.0:
        return math.nan
    z = (sr - sr_benchmark) * math.sqrt(values.size - 1) / math.sqrt(variance_term)
    return float(stats.norm.cdf(z))


def expected_max_sharpe(trial_sharpes: Returns1D, n_trials: int | None = None) -> float:
    """SR0, the per-period Sharpe the best of `n_trials` skill-less trials reaches by luck, from
    the sample variance of the trials' per-period Sharpes. `n_trials` defaults to the number of
    trials given (pass more if more were tried than reported). Non-finite trial Sharpes carry no
    dispersion information and are left out of the variance. N < 2 means no selection happened,
    so SR0 = 0 (and DSR = PSR(0)); NaN if N >= 2 but fewer than two finite Sharpes remain."""
    if n_trials is not None and n_trials < 1:
        raise RLTraderError(f"n_trials must be at least 1, got {n_trials}")
    sharpes = _as_array(trial_sharpes)
    n = sharpes.size if n_trials is None else int(n_trials)
    if n < 2:
        return 0.0
    finite = sharpes[np.isfinite(sharpes)]
    if finite.size < 2:
        return math.nan
    variance = float(np.var(finite, ddof=1))
    quantiles = (1.0 - EULER_GAMMA) * stats.norm.ppf(1.0 - 1.0 / n) + EULER_GAMMA * stats.norm.ppf(
        1.0 - 1.0 / (n * math.e))
    return math.sqrt(variance) * float(quantiles)


def deflated_sharpe(returns: Returns1D, trial_sharpes: Returns1D, n_trials: int | None = None) -> float:
    """DSR: PSR against the Sharpe the best of the trials would reach by luck, so the chosen
    strategy is credited only for what the multiple testing does not explain."""
    sr0 = expected_max_sharpe(trial_sharpes, n_trials)
    return probabilistic_sharpe(returns, sr0) if math.isfinite(sr0) else math.nan


def _block_length(difference: np.ndarray) -> float:
    """Politis-White's expected stationary-bootstrap block length of `difference`, floored at 1.
    A constant difference has no dependence to preserve (and arch returns NaN for it): 1."""
    if difference.size < 2 or np.ptp(difference) == 0.0:
        return 1.0
    length = float(optimal_block_length(difference)["stationary"].iloc[0])
    return max(length, 1.0) if math.isfinite(length) else 1.0


def bootstrap_sharpe_diff_ci(returns: Returns1D, benchmark_returns: Returns1D, periods_per_year: float, *,
                             reps: int = 1000, seed: int = 0, level: float = 0.95) -> dict:
    """Percentile interval of sqrt(ppy) * (SR_rl - SR_bench) from a stationary bootstrap that
    resamples both (aligned) series on the same indices, keeping their correlation and the
    serial dependence of their difference. Replications with an undefined Sharpe are dropped."""
    rl = _as_array(returns)
    bench = _as_array(benchmark_returns)
    if rl.size != bench.size:
        raise RLTraderError(f"the returns ({rl.size}) and benchmark returns ({bench.size}) are not aligned")
    if not 0.0 < level < 1.0:
        raise RLTraderError(f"the confidence level must lie in (0, 1), got {level}")
    if reps < 1 or periods_per_year <= 0:
        raise RLTraderError(f"reps and periods_per_year must be positive, got {reps} and {periods_per_year}")
    scale = math.sqrt(periods_per_year)

    def sharpe_diff(x: np.ndarray, y: np.ndarray) -> float:
        return scale * (sharpe_per_period(x) - sharpe_per_period(y))

    block = _block_length(rl - bench)
    bootstrap = StationaryBootstrap(block, rl, bench, seed=np.random.default_rng(seed))
    draws = bootstrap.apply(lambda x, y: np.array([sharpe_diff(x, y)]), reps=reps)[:, 0]
    draws = draws[np.isfinite(draws)]
    tail = (1.0 - level) / 2.0
    low, high = (np.quantile(draws, [tail, 1.0 - tail]) if draws.size else (math.nan, math.nan))
    return {"low": float(low), "high": float(high), "point": float(sharpe_diff(rl, bench)),
            "block_length": block, "reps": int(reps), "level": float(level)}


def _spa_pvalue(benchmark_losses: np.ndarray, model_losses: np.ndarray, block: float, reps: int, seed: int) -> float:
    """The consistent SPA p-value of H0 "no model has a lower expected loss than the benchmark"."""
    spa = SPA(benchmark_losses, model_losses, block_size=block, reps=reps, bootstrap="stationary",
              seed=np.random.default_rng(seed))
    spa.compute()
    return float(spa.pvalues["consistent"])


def spa_pvalues(returns: Returns1D, baseline_returns: pd.DataFrame, *, reps: int = 1000,
                seed: int = 0, block_size: float | None = None) -> dict:
    """Hansen's SPA test both ways, on losses = -returns (aligned rows):

    - "spa_pvalue": benchmark RL, models the baselines. H0: no baseline beats RL; a SMALL value
      says at least one baseline outperforms RL.
    - "spa_pvalue_rl_vs": per baseline b, benchmark b and the single model RL. H0: RL does not
      beat b; a small value says RL outperforms b.
    - "spa_pvalue_rl_outperforms": the max of those, small only if RL beats every baseline.

    `block_size` defaults to the optimal stationary block length of the RL-minus-mean-baseline
    loss difference (floored at 1). Every test reseeds from `seed`, so each is reproducible alone."""
    rl = _as_array(returns)
    baselines = pd.DataFrame(baseline_returns).astype(float)
    if baselines.shape[1] == 0 or baselines.shape[0] != rl.size:
        raise RLTraderError(f"the baseline returns {baselines.shape} are empty or not aligned with the "
                            f"{rl.size} returns")
    rl_losses = -rl
    baseline_losses = -baselines.to_numpy()
    block = (_block_length(rl_losses - baseline_losses.mean(axis=1)) if block_size is None
             else max(float(block_size), 1.0))
    rl_vs = {str(name): _spa_pvalue(baseline_losses[:, j], rl_losses, block, reps, seed)
             for j, name in enumerate(baselines.columns)}
    return {"spa_pvalue": _spa_pvalue(rl_losses, baseline_losses, block, reps, seed),
            "spa_pvalue_rl_outperforms": max(rl_vs.values()),
            "spa_pvalue_rl_vs": rl_vs,
            "block_size": block}


def _json_float(value: float) -> float | None:
    """A float for the JSON report, None where it is undefined (NaN or infinite)."""
    value = float(value)
    return value if math.isfinite(value) else None


def _aligned(returns: pd.Series, benchmark_returns: pd.Series, baseline_returns: pd.DataFrame) -> pd.DataFrame:
    """The three inputs on their common dates without NaN rows, or a one-line RLTraderError."""
    if not isinstance(returns, pd.Series) or not isinstance(benchmark_returns, pd.Series):
        raise RLTraderError("the returns and benchmark returns must be pandas Series indexed by date")
    if not isinstance(baseline_returns, pd.DataFrame) or baseline_returns.shape[1] == 0:
        raise RLTraderError("the baseline returns must be a DataFrame with at least one column")
    frames = [returns, benchmark_returns, baseline_returns]
    if any(not frame.index.is_unique for frame in frames):
        raise RLTraderError("the returns, benchmark or baseline returns have duplicate dates")
    baselines = baseline_returns.copy()
    baselines.columns = [f"baseline:{name}" for name in baselines.columns]
    joined = pd.concat([returns.rename("rl"), benchmark_returns.rename("benchmark"), baselines], axis=1,
                       join="inner").astype(float).dropna(how="any")
    if len(joined) < MIN_OBSERVATIONS:
        raise RLTraderError(f"only {len(joined)} dates are common to the returns, benchmark and baselines "
                            f"(without NaN); significance needs at least {MIN_OBSERVATIONS}")
    return joined


def significance(returns: pd.Series, benchmark_returns: pd.Series, baseline_returns: pd.DataFrame, trial_sharpes: Returns1D,
                 periods_per_year: float, *, n_trials: int | None = None, reps: int = 1000, seed: int = 0) -> dict:
    """All the significance statistics of one study, JSON-safe (undefined values are None).

    The series are first aligned on their common dates and rows with any NaN dropped, so every
    statistic compares the same days. `trial_sharpes` are the per-period Sharpes of all the
    configurations tried (for the DSR); `n_trials` overrides their count."""
    joined = _aligned(returns, benchmark_returns, baseline_returns)
    rl = joined["rl"].to_numpy()
    bench = joined["benchmark"].to_numpy()
    baselines = joined.drop(columns=["rl", "benchmark"])
    baselines.columns = list(baseline_returns.columns)
    trials = _as_array(trial_sharpes)
    finite_trials = trials[np.isfinite(trials)]
    n = trials.size if n_trials is None else int(n_trials)
    sr0 = expected_max_sharpe(trials, n_trials)
    boot = bootstrap_sharpe_diff_ci(rl, bench, periods_per_year, reps=reps, seed=seed)
    spa = spa_pvalues(rl, baselines, reps=reps, seed=seed)
    return {
        "psr_vs_zero": _json_float(probabilistic_sharpe(rl, 0.0)),
        "psr_vs_benchmark": _json_float(probabilistic_sharpe(rl, sharpe_per_period(bench))),
        "dsr": _json_float(deflated_sharpe(rl, trials, n_trials)),
        "n_trials": n,
        "trial_sharpe_var": _json_float(np.var(finite_trials, ddof=1) if finite_trials.size >= 2 else math.nan),
        "expected_max_sharpe": _json_float(sr0),
        "sharpe_per_period": _json_float(sharpe_per_period(rl)),
        "skew": _json_float(stats.skew(rl, bias=True)),
        "kurtosis": _json_float(stats.kurtosis(rl, fisher=False, bias=True)),
        "n_obs": int(rl.size),
        "bootstrap_ci_sharpe_diff": [_json_float(boot["low"]), _json_float(boot["high"])],
        "bootstrap": {key: (_json_float(value) if isinstance(value, float) else value) for key, value in boot.items()},
        "spa_pvalue": _json_float(spa["spa_pvalue"]),
        "spa_pvalue_rl_outperforms": _json_float(spa["spa_pvalue_rl_outperforms"]),
        "spa_pvalue_rl_vs": {name: _json_float(p) for name, p in spa["spa_pvalue_rl_vs"].items()},
    }
