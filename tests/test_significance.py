"""Known answers of the significance statistics: PSR, SR0 and DSR against hand computations with
plain numpy and math.erf, the raw (not excess) kurtosis, the bootstrap interval's determinism and
direction, both SPA directions, and the one-line errors of too-short or misaligned input."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from backtests.significance import (
    EULER_GAMMA,
    bootstrap_sharpe_diff_ci,
    deflated_sharpe,
    expected_max_sharpe,
    probabilistic_sharpe,
    sharpe_per_period,
    significance,
    spa_pvalues,
)
from rl_strategy.errors import RLTraderError

RETURNS = np.array([0.012, -0.004, 0.007, 0.021, -0.015, 0.003, 0.009, -0.002, 0.016, -0.006])
TRIALS = [0.1, 0.2, 0.3]  # sample variance (ddof=1) exactly 0.01


def phi(z: float) -> float:
    """The standard normal CDF from math.erf."""
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


def hand_psr(x: np.ndarray, sr_star: float, excess: bool = False) -> float:
    """PSR step by step: sample-std Sharpe, population skew and raw kurtosis (or the excess one)."""
    n = len(x)
    mean = sum(x) / n
    sample_std = math.sqrt(sum((v - mean) ** 2 for v in x) / (n - 1))
    sr = mean / sample_std
    m2 = sum((v - mean) ** 2 for v in x) / n
    m3 = sum((v - mean) ** 3 for v in x) / n
    m4 = sum((v - mean) ** 4 for v in x) / n
    skew = m3 / m2**1.5
    kurt = m4 / m2**2 - (3.0 if excess else 0.0)
    return phi((sr - sr_star) * math.sqrt(n - 1) / math.sqrt(1.0 - skew * sr + (kurt - 1.0) / 4.0 * sr**2))


def test_psr_matches_the_hand_formula() -> None:
    assert sharpe_per_period(RETURNS) == pytest.approx(RETURNS.mean() / RETURNS.std(ddof=1), abs=1e-15)
    for sr_star in (0.0, 0.1, -0.2, 0.5):
        assert probabilistic_sharpe(RETURNS, sr_star) == pytest.approx(hand_psr(RETURNS, sr_star), abs=1e-12)
    # Computed once with hand_psr: SR = 0.37206164206414880, skew = -0.14099137650405152,
    # raw kurtosis = 2.1378539499844122, T = 10 -> Phi(1.0676...) = 0.8572875815302834.
    assert probabilistic_sharpe(RETURNS) == pytest.approx(0.8572875815302834, abs=1e-12)
    assert probabilistic_sharpe(pd.Series(RETURNS)) == pytest.approx(0.8572875815302834, abs=1e-12)


def test_psr_uses_the_raw_kurtosis_not_the_excess_one() -> None:
    raw, excess = hand_psr(RETURNS, 0.0), hand_psr(RETURNS, 0.0, excess=True)
    assert abs(raw - excess) > 1e-2
    assert probabilistic_sharpe(RETURNS) == pytest.approx(raw, abs=1e-12)


def test_psr_is_one_half_at_the_benchmark_and_monotone() -> None:
    assert probabilistic_sharpe(RETURNS, sharpe_per_period(RETURNS)) == pytest.approx(0.5, abs=1e-15)
    shifted = [probabilistic_sharpe(RETURNS + shift) for shift in np.linspace(-0.01, 0.01, 9)]
    assert all(b > a for a, b in zip(shifted, shifted[1:], strict=False))
    against = [probabilistic_sharpe(RETURNS, sr_star) for sr_star in np.linspace(-0.5, 0.8, 9)]
    assert all(b < a for a, b in zip(against, against[1:], strict=False))


def test_undefined_sharpe_gives_nan() -> None:
    assert math.isnan(sharpe_per_period([0.01]))
    assert math.isnan(sharpe_per_period([0.01, 0.01, 0.01]))
    assert math.isnan(probabilistic_sharpe([0.01, 0.01, 0.01]))


def test_expected_max_sharpe_matches_the_hand_formula() -> None:
    # V = 0.01, N = 10: 0.1 * ((1 - g) * Phi^-1(0.9) + g * Phi^-1(1 - 1/(10 e)))
    #                 = 0.1 * (0.42278 * 1.2815515655446004 + 0.57722 * 1.7892417645816283)
    assert expected_max_sharpe(TRIALS, n_trials=10) == pytest.approx(0.157459830134575, rel=1e-12)
    hand = math.sqrt(0.01) * ((1 - EULER_GAMMA) * 1.2815515655446004 + EULER_GAMMA * 1.7892417645816283)
    assert expected_max_sharpe(TRIALS, n_trials=10) == pytest.approx(hand, rel=1e-12)
    # N defaults to the number of trials; N < 2 means no selection: SR0 = 0
    assert expected_max_sharpe(TRIALS) < expected_max_sharpe(TRIALS, n_trials=10)
    assert expected_max_sharpe([0.3]) == 0.0
    assert expected_max_sharpe([]) == 0.0
    with pytest.raises(RLTraderError):
        expected_max_sharpe(TRIALS, n_trials=0)


def test_dsr_is_psr_against_sr0_and_deflates() -> None:
    sr0 = 0.157459830134575
    assert deflated_sharpe(RETURNS, TRIALS, n_trials=10) == pytest.approx(hand_psr(RETURNS, sr0), abs=1e-12)
    assert deflated_sharpe(RETURNS, TRIALS, n_trials=10) < probabilistic_sharpe(RETURNS, 0.0)
    assert deflated_sharpe(RETURNS, [0.2], n_trials=1) == probabilistic_sharpe(RETURNS, 0.0)
    tighter = deflated_sharpe(RETURNS, [0.18, 0.2, 0.22], n_trials=10)
    assert tighter > deflated_sharpe(RETURNS, TRIALS, n_trials=10)


def noise(seed: int, n: int = 500, scale: float = 0.01) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, scale, n)


def test_bootstrap_ci_is_deterministic_and_contains_the_point() -> None:
    rl, bench = noise(1) + 0.0005, noise(2)
    first = bootstrap_sharpe_diff_ci(rl, bench, 252, reps=200, seed=7)
    assert first == bootstrap_sharpe_diff_ci(rl, bench, 252, reps=200, seed=7)
    assert first != bootstrap_sharpe_diff_ci(rl, bench, 252, reps=200, seed=8)
    assert set(first) == {"low", "high", "point", "block_length", "reps", "level"}
    assert first["low"] < first["point"] < first["high"]
    point = math.sqrt(252) * (sharpe_per_period(rl) - sharpe_per_period(bench))
    assert first["point"] == pytest.approx(point, abs=1e-12)
    assert first["block_length"] >= 1.0 and first["reps"] == 200 and first["level"] == 0.95


def test_bootstrap_ci_on_identical_series_is_zero() -> None:
    rl = noise(3)
    ci = bootstrap_sharpe_diff_ci(rl, rl.copy(), 252, reps=200)
    assert (ci["low"], ci["high"], ci["point"], ci["block_length"]) == (0.0, 0.0, 0.0, 1.0)


def test_bootstrap_ci_is_above_zero_for_a_clearly_better_series() -> None:
    bench = noise(4)
    rl = bench + 0.003 + noise(5, scale=0.003)
    ci = bootstrap_sharpe_diff_ci(rl, bench, 252, reps=200)
    assert 0.0 < ci["low"] < ci["high"]


def baselines_frame() -> pd.DataFrame:
    return pd.DataFrame({"equal_weight": noise(10), "all_spy": noise(11)})


def test_spa_detects_rl_outperforming_every_baseline() -> None:
    base = baselines_frame()
    rl = base["equal_weight"].to_numpy() + 0.004 + noise(12, scale=0.003)
    out = spa_pvalues(rl, base, reps=200)
    assert out["spa_pvalue_rl_outperforms"] < 0.05
    assert set(out["spa_pvalue_rl_vs"]) == {"equal_weight", "all_spy"}
    assert out["spa_pvalue_rl_outperforms"] == max(out["spa_pvalue_rl_vs"].values())
    # far-worse baselines are not re-centred by the consistent p-value, so it sits near 1/2 here
    assert out["spa_pvalue"] > 0.2
    assert out == spa_pvalues(rl, base, reps=200)


def test_spa_detects_a_baseline_beating_rl() -> None:
    base = baselines_frame()
    rl = base["equal_weight"].to_numpy() - 0.004 + noise(12, scale=0.003)
    out = spa_pvalues(rl, base, reps=200)
    assert out["spa_pvalue"] < 0.05
    assert out["spa_pvalue_rl_outperforms"] > 0.5


def dated(values: np.ndarray, start: str = "2020-01-01") -> pd.Series:
    return pd.Series(values, index=pd.bdate_range(start, periods=len(values)))


def test_significance_aligns_drops_nan_and_is_json_safe() -> None:
    base = baselines_frame()
    base.index = pd.bdate_range("2020-01-01", periods=len(base))
    bench = dated(noise(20))
    rl = dated(base["equal_weight"].to_numpy() + 0.002 + noise(21, scale=0.003))
    rl.iloc[5] = np.nan
    out = significance(rl.iloc[:-10], bench, base, [0.01, 0.03, 0.05, -0.02], 252, reps=200)
    json.dumps(out, allow_nan=False)
    assert out["n_obs"] == 489  # 500 dates, 10 cut from the RL series, one NaN row dropped
    assert set(out) == {"psr_vs_zero", "psr_vs_benchmark", "dsr", "n_trials", "trial_sharpe_var",
                        "expected_max_sharpe", "sharpe_per_period", "skew", "kurtosis", "n_obs",
                        "bootstrap_ci_sharpe_diff", "bootstrap", "spa_pvalue", "spa_pvalue_rl_outperforms",
                        "spa_pvalue_rl_vs"}
    common = pd.concat([rl.iloc[:-10], bench], axis=1, join="inner").dropna()
    assert out["psr_vs_benchmark"] == pytest.approx(
        probabilistic_sharpe(common.iloc[:, 0], sharpe_per_period(common.iloc[:, 1])), abs=1e-12)
    assert out["n_trials"] == 4
    assert out["trial_sharpe_var"] == pytest.approx(np.var([0.01, 0.03, 0.05, -0.02], ddof=1), abs=1e-15)
    assert out["dsr"] < out["psr_vs_zero"]
    assert out["bootstrap_ci_sharpe_diff"] == [out["bootstrap"]["low"], out["bootstrap"]["high"]]
    assert set(out["spa_pvalue_rl_vs"]) == {"equal_weight", "all_spy"}
    assert significance(rl, bench, base, [], 252, reps=200)["expected_max_sharpe"] == 0.0


def test_significance_refuses_short_or_misaligned_input() -> None:
    base = pd.DataFrame({"b": noise(30, n=100)}, index=pd.bdate_range("2020-01-01", periods=100))
    with pytest.raises(RLTraderError, match="at least 30"):
        significance(dated(noise(31, n=20)), dated(noise(32, n=20)), base, [], 252, reps=50)
    with pytest.raises(RLTraderError, match="only 0 dates"):
        significance(dated(noise(31, n=100), "2021-01-01"), dated(noise(32, n=100)), base, [], 252, reps=50)
    with pytest.raises(RLTraderError, match="Series"):
        significance(noise(31, n=100), dated(noise(32, n=100)), base, [], 252, reps=50)
    with pytest.raises(RLTraderError, match="at least one column"):
        significance(dated(noise(31, n=100)), dated(noise(32, n=100)), base.iloc[:, :0], [], 252, reps=50)
    duplicated = pd.Series(noise(33, n=100), index=pd.DatetimeIndex(["2020-01-01"] * 100))
    with pytest.raises(RLTraderError, match="duplicate"):
        significance(duplicated, dated(noise(32, n=100)), base, [], 252, reps=50)
    with pytest.raises(RLTraderError, match="not aligned"):
        bootstrap_sharpe_diff_ci(noise(1, n=50), noise(2, n=40), 252)
