"""Honest readouts: sampled paths, rolling origins, starting portfolios and the fair random null,
each against a known answer (a single run, a hand-built policy, vectorbt itself)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from backtests.baselines import BaselineContext, random_switch_weights, switch_days
from backtests.evaluate import EvalOptions, percentile_of, run_backtest
from rl_strategy.data import load_market, select_period
from rl_strategy.errors import RLTraderError
from rl_strategy.features import WARMUP
from rl_strategy.regimes import build_regime_table
from rl_strategy.strategy import RLPolicy

TICKERS = ["SPY", "QQQ", "IWM"]
FAST = EvalOptions(samples=8, null_draws=20, horizon_days=60)


@pytest.fixture(scope="module")
def panel(source):
    return load_market(TICKERS, "2020-01-01", "2021-06-30", **source, history_days=WARMUP)


@pytest.fixture(scope="module")
def policy(tiny_checkpoints):
    return RLPolicy.load(tiny_checkpoints[0])


def test_sampled_paths_in_a_batch_equal_single_runs(policy, panel):
    seeds = [11, 12, 13]
    batch = policy.paths(panel.close, panel.open, names=["g", "a", "b", "c"], starts=[panel.period_start] * 4,
                         sample=[False, True, True, True], seeds=[0, *seeds])
    for name, seed in zip("abc", seeds, strict=True):
        single = policy.run(panel.close, panel.open, start=panel.period_start, sample=True, seed=seed)
        pd.testing.assert_series_equal(batch.actions[name], single.actions, check_names=False)
        np.testing.assert_array_equal(batch.equity[name].dropna().to_numpy(),
                                      single.equity.iloc[panel.history_rows():].to_numpy())
    greedy = policy.run(panel.close, panel.open, start=panel.period_start)
    pd.testing.assert_frame_equal(batch.weights["g"], greedy.weights, check_names=False)
    assert not batch.actions["a"].equals(batch.actions["b"])  # different seeds, different paths


def test_sampled_paths_do_not_look_ahead(policy, panel):
    close, open_ = panel.close, panel.open
    kw = dict(names=["s"], starts=[panel.period_start], sample=[True], seeds=[5])
    base = policy.paths(close, open_, **kw).weights
    t = panel.history_rows() + 100
    rng = np.random.default_rng(1)
    c2, o2 = close.copy(), open_.copy()
    c2.iloc[t + 1:] *= rng.uniform(0.7, 1.3, size=c2.iloc[t + 1:].shape)
    o2.iloc[t + 1:] *= rng.uniform(0.7, 1.3, size=o2.iloc[t + 1:].shape)
    other = policy.paths(c2, o2, **kw).weights
    pd.testing.assert_frame_equal(base.iloc[:t + 1], other.iloc[:t + 1])
    assert not base.iloc[t + 1:].equals(other.iloc[t + 1:])  # the shock does reach later decisions


def test_rolling_origins_reproduce_single_backtests(policy, panel):
    result = run_backtest(policy, panel, options=FAST)
    origins = result.rolling_origins["origins"]
    assert result.rolling_origins["n"] == 18  # Jan 2020 .. Jun 2021, one per month
    assert [o["start"][:7] for o in origins[:3]] == ["2020-01", "2020-02", "2020-03"]
    idx = panel.close.index
    for k in (2, 17):  # a full 60-day window, and the last one, clipped at the period end
        o = origins[k]
        start = idx.get_loc(pd.Timestamp(o["start"]))
        end = idx[start + o["days"] - 1]
        # The same panel rows before the origin (same features), ending where the origin's window ends.
        alone = select_period(panel, o["start"], end, history_days=start)
        single = run_backtest(policy, alone, options=EvalOptions(samples=2, null_draws=1, origins="none"))
        # a shorter panel may estimate another number of days per year: compare per-period Sharpe
        scale = np.sqrt(result.periods_per_year / single.periods_per_year)
        assert single.table.loc["RL", "sharpe"] * scale == pytest.approx(o["rl_sharpe"], abs=1e-10)
        assert single.table.loc["EQ_BUY_HOLD", "sharpe"] * scale == pytest.approx(o["ew_sharpe"], abs=1e-10)
        assert single.table.loc["ALL_SPY", "sharpe"] * scale == pytest.approx(o["spy_sharpe"], abs=1e-10)
    assert origins[17]["days"] < 61 and origins[2]["days"] == 61
    diff = np.array([o["rl_sharpe"] - o["ew_sharpe"] for o in origins])
    assert result.rolling_origins["median_sharpe_diff_vs_ew"] == pytest.approx(np.median(diff))
    assert result.rolling_origins["share_beats_ew"] == pytest.approx(np.mean(diff > 0))


@pytest.mark.parametrize("execution", ["next_open", "close"])
def test_initial_portfolio_keeps_parity_and_holds(policy, panel, execution):
    result = run_backtest(policy, panel, execution=execution, options=EvalOptions(samples=4, null_draws=4,
                                                                                 initial="EQ_WEIGHT"))
    assert result.parity_max_rel_diff <= 1e-9  # every RL path: greedy, sampled, origins
    assert result.options.initial == "EQ_WEIGHT"
    t, days = result.table, len(result.returns)
    # ALL_CASH sells the whole starting portfolio on its first decision (turnover 1 that day) ...
    assert t.loc["ALL_CASH", "rebalances"] == 1 and t.loc["ALL_CASH", "turnover"] * days == pytest.approx(1, abs=0.02)
    # ... while EQ_BUY_HOLD only trims the drift back to equal weight: a tiny first-day turnover.
    assert t.loc["EQ_BUY_HOLD", "rebalances"] == 1 and t.loc["EQ_BUY_HOLD", "turnover"] * days < 0.05
    with pytest.raises(RLTraderError, match="unknown initial portfolio"):
        run_backtest(policy, panel, options=EvalOptions(initial="NOPE"))


def test_an_initial_portfolio_held_is_buy_and_hold_from_the_close_before(panel):
    """Starting in ALL_SPY (held since the close before the first decision) and only HOLDing is SPY
    buy-and-hold from that close: no cost, equity = SPY's close over the close before the start."""
    import torch

    from rl_strategy.env import MarketEnv, prepare_training_market

    market = prepare_training_market(panel, "next_open")
    table = build_regime_table(tuple(TICKERS))
    env = MarketEnv(market, table, n_envs=2, episode_length=30, fees=0.001, dtype=torch.float64)
    t0 = market.first_decision
    initial = torch.tensor(np.stack([table.initial_weights("ALL_SPY"), table.initial_weights("HALF_EQ")]))
    obs = env.reset(torch.tensor([t0, t0]), initial)
    spy = panel.close["SPY"].to_numpy()
    half = 0.5 + 0.5 * (panel.close.iloc[t0] / panel.close.iloc[t0 - 1]).mean()
    np.testing.assert_allclose(env.value.numpy(), [spy[t0] / spy[t0 - 1], half], rtol=1e-12)
    w = obs[0, env._w_slice].numpy()  # the observation shows the drifted starting weights
    np.testing.assert_allclose(w, [0.0, 1.0, 0.0, 0.0], atol=1e-12)
    for k in range(1, 10):
        env.step(torch.tensor([0, 0]))  # HOLD
        assert float(env.value[0]) == pytest.approx(spy[t0 + k] / spy[t0 - 1], rel=1e-12)


def test_switch_days_and_the_fair_random_null():
    table = build_regime_table(tuple(TICKERS))
    dates = pd.bdate_range("2021-01-04", periods=10)
    actions = pd.Series(["", "HOLD", "ALL_CASH", "ALL_SPY", "ALL_SPY", "HOLD", "EQ_WEIGHT", "HOLD", "ALL_CASH", ""],
                        index=dates)
    # From cash: ALL_CASH is no switch, ALL_SPY twice is one switch, then EQ_WEIGHT and back to cash.
    np.testing.assert_array_equal(switch_days(actions, table, "cash"), [3, 6, 8])
    np.testing.assert_array_equal(switch_days(actions, table, "ALL_SPY"), [2, 3, 6, 8])
    ctx = BaselineContext(close=pd.DataFrame(1.0, index=dates, columns=TICKERS), regimes=table, first=1,
                          rl_actions=actions, seed=3)
    w = random_switch_weights(ctx, 4000)
    ordered = np.flatnonzero(~np.isnan(w[0]).all(axis=1))
    np.testing.assert_array_equal(ordered, [3, 6, 8])  # exactly RL's switch days
    ids = {tuple(np.round(r, 12)): i for i, r in enumerate(table.weights[1:], start=1)}
    held = np.array([[ids[tuple(np.round(w[d, row], 12))] for row in (3, 6, 8)] for d in range(len(w))])
    assert (held[:, 0] != table.names.index("ALL_CASH")).all()  # every draw really switches
    assert (held[:, 1] != held[:, 0]).all() and (held[:, 2] != held[:, 1]).all()
    counts = np.bincount(held[:, 0], minlength=table.n_actions)[1:]
    assert counts[0] == 0 and counts[1:].min() > 4000 / 14 * 0.75  # uniform over the 14 other regimes
    again = random_switch_weights(ctx, 4000)
    np.testing.assert_array_equal(np.nan_to_num(w, nan=-1), np.nan_to_num(again, nan=-1))  # seeded


def test_percentile_of_by_hand():
    assert percentile_of(3.0, np.array([1.0, 2.0, 3.0, 4.0])) == 62.5  # 2 below, 1 tie (half)
    assert percentile_of(9.0, np.array([1.0, 2.0])) == 100.0 and percentile_of(0.0, np.array([1.0])) == 0.0


def test_null_percentile_of_a_policy_equal_to_one_draw(policy, panel, monkeypatch):
    """If draw 3 of the null is the RL policy itself, its Sharpe ties that draw: the percentile is
    the share of draws below RL plus half a draw."""
    import backtests.evaluate as evaluate

    real = evaluate.random_switch_weights
    captured = {}

    def with_rl(ctx, n):
        draws = real(ctx, n)
        rl = policy.run(panel.close, panel.open, start=panel.period_start).weights.to_numpy()
        draws[3] = rl
        captured["n"] = n
        return draws

    monkeypatch.setattr(evaluate, "random_switch_weights", with_rl)
    result = run_backtest(policy, panel, options=FAST)
    null = result.random_null
    assert null["n"] == captured["n"] == 20
    # the null's Sharpes are recomputed from RANDOM = draw 0 and the others; RL's equals draw 3's
    assert null["rl_sharpe_percentile"] % 5.0 == pytest.approx(2.5)  # k below, plus one tie counted half


def test_sample_mode_uses_the_median_sampled_path(policy, panel):
    greedy = run_backtest(policy, panel, options=FAST)
    sampled = run_backtest(policy, panel, options=EvalOptions(samples=8, null_draws=20, horizon_days=60,
                                                              policy_mode="sample"))
    s = sampled.rl_sampled
    assert s["rl_path"].startswith("S") and sampled.options.policy_mode == "sample"
    # the 8 sampled Sharpes are the same in both runs; the RL row is their lower median
    assert s["sharpe_median"] == greedy.rl_sampled["sharpe_median"]
    assert sampled.table.loc["RL", "sharpe"] <= s["sharpe_median"] + 1e-12
    assert greedy.table.loc["RL", "sharpe"] == pytest.approx(greedy.rl_sampled["greedy_sharpe"])
    crit = {c.name: c for c in greedy.criteria}["rl_greedy_representative"]
    assert crit.value == greedy.rl_sampled["greedy_sharpe_percentile"] and crit.threshold == (5.0, 95.0)
    assert crit.passed == (5.0 <= crit.value <= 95.0)
    assert bool(greedy.warnings) == (not crit.passed)


def test_behaviour_readouts(policy, panel):
    r = run_backtest(policy, panel, options=FAST)
    t = r.table
    assert t.loc["ALL_CASH", "time_in_market"] == 0.0 and pd.isna(t.loc["ALL_CASH", "first_trade"])
    assert t.loc["ALL_SPY", "first_trade"] == str(panel.close.index[panel.history_rows() + 1].date())  # next open
    assert 0.99 < t.loc["ALL_SPY", "time_in_market"] <= 1.0
    b = r.rl_behaviour
    assert 0.0 <= b["mean_entropy"] <= b["max_entropy"] == pytest.approx(np.log(16))
    assert 1 / 16 <= b["mean_max_prob"] <= 1.0
    assert sum(b["regime_share"].values()) == pytest.approx(1.0)
