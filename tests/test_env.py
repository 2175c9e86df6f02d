"""The environment: regime table, observation layout, accounting parity with vectorbt, no look-ahead."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from rl_strategy.data import load_market
from rl_strategy.env import MarketEnv, prepare_market, prepare_training_market
from rl_strategy.features import WARMUP, observation_layout
from rl_strategy.portfolio import simulate_portfolio, value_before_orders
from rl_strategy.regimes import build_regime_table

TICKERS = ["SPY", "QQQ", "IWM"]


@pytest.fixture(scope="module", params=["synthetic", "real"])
def panel(request):
    """Every accounting, look-ahead and state test runs on the embedded synthetic market (always)
    and on the real prices in ../shared (when present)."""
    if request.param == "synthetic":
        return load_market(TICKERS, "2015-01-01", "2024-12-31", source="synthetic", seed=0, history_days=WARMUP)
    return load_market(TICKERS, "2015-01-01", "2024-12-31", source="csv",
                       csv_dir=request.getfixturevalue("market_dir"), history_days=WARMUP)


def test_regime_table_v2():
    t = build_regime_table(("SPY", "QQQ", "IWM"))
    assert t.n_actions == 16
    assert t.names[:5] == ("HOLD", "ALL_CASH", "ALL_SPY", "ALL_QQQ", "ALL_IWM")
    assert t.names[8] == "EQ_WEIGHT" and t.names[-1] == "HALF_EQ"
    assert np.isnan(t.weights[0]).all()
    w = t.weights[1:]
    assert np.all(w >= 0) and np.all(w.sum(axis=1) <= 1 + 1e-12)
    np.testing.assert_allclose(t.weights[t.names.index("TILT_QQQ")], [0.25, 0.5, 0.25])
    np.testing.assert_allclose(t.cash_weights()[t.names.index("HALF_EQ")], [0.5, 1 / 6, 1 / 6, 1 / 6])
    assert len({tuple(r) for r in w}) == len(w)  # no duplicate regimes


def test_regime_table_other_universes_follow_the_rule():
    assert build_regime_table(("TLT", "GLD")).names == (
        "HOLD", "ALL_CASH", "ALL_TLT", "ALL_GLD", "PAIR_TLT_GLD", "HALF_TLT", "HALF_GLD", "HALF_EQ")
    sectors = tuple(f"X{i}" for i in range(11))
    assert build_regime_table(sectors).n_actions == 4 + 3 * 11 + 55


def test_observation_layout_is_64_for_v2_and_grows():
    t = build_regime_table(tuple(TICKERS))
    layout = observation_layout(TICKERS, t.names, 64)
    assert len(layout) == 64 and layout[0] == "SPY:ret_1d" and layout[24] == "weight:CASH"
    assert layout[28] == "drawdown" and layout[29] == "prev_action:HOLD" and layout[45:] == ["pad"] * 19
    assert observation_layout(TICKERS, t.names, 40) == layout[:45]  # obs_dim is a minimum: grown to the 45 needed


def _random_actions(rng, steps, n_envs, n_actions):
    """Mostly regimes, with long HOLD stretches, like a real policy."""
    a = rng.integers(0, n_actions, size=(steps, n_envs))
    a[rng.random((steps, n_envs)) < 0.4] = 0
    return a


@pytest.mark.parametrize("execution", ["next_open", "close"])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-9), (torch.float32, 1e-5)])
def test_env_equity_matches_vectorbt(panel, execution, dtype, tol):
    market = prepare_training_market(panel, execution)
    table = build_regime_table(tuple(TICKERS))
    n_envs, length = 8, 400
    env = MarketEnv(market, table, n_envs=n_envs, episode_length=length, fees=0.001, slippage=0.0005,
                    seed=3, dtype=dtype)
    starts = torch.tensor([market.first_decision + 97 * i for i in range(n_envs)])
    env.reset(starts)
    rng = np.random.default_rng(0)
    actions = _random_actions(rng, length, n_envs, table.n_actions)
    values = np.ones((length + 1, n_envs))
    for k in range(length):
        _, _, _, trunc, info = env.step(torch.as_tensor(actions[k]))
        values[k + 1] = (info["final_value"] if k == length - 1 else env.value).double().numpy()

    # Same decisions as weight frames, one vectorbt group per env, over each env's own window.
    dates = market.dates
    frames = {}
    for e in range(n_envs):
        s = int(starts[e])
        w = np.full((len(dates), len(TICKERS)), np.nan)
        w[s:s + length] = table.weights[actions[:, e]]
        frames[f"env{e}"] = pd.DataFrame(w, index=dates, columns=TICKERS)
    stacked = pd.concat(frames, axis=1)
    pf = simulate_portfolio(stacked, panel.open, panel.close, fees=0.001, slippage=0.0005, execution=execution,
                            init_cash=1e6)
    vbt_value = value_before_orders(pf, panel.close, execution) / 1e6
    worst = 0.0
    for e in range(n_envs):
        s = int(starts[e])
        ref = vbt_value[f"env{e}"].to_numpy()[s:s + length + 1]
        worst = max(worst, np.max(np.abs(values[:, e] / ref - 1)))
    assert worst <= tol


def test_reward_is_net_return_minus_benchmark_by_hand(panel):
    market = prepare_training_market(panel, "next_open")
    table = build_regime_table(tuple(TICKERS))
    env = MarketEnv(market, table, n_envs=1, episode_length=5, fees=0.001, slippage=0.0, reward_scale=100.0,
                    dtype=torch.float64)
    s = market.first_decision + 10
    env.reset(torch.tensor([s]))
    o, c = panel.open.to_numpy(), panel.close.to_numpy()
    spy = table.names.index("ALL_SPY")
    # Day s: ALL_SPY from all cash -> buy at open s+1 with all cash net of the fee, mark at close s+1.
    _, r1, *_ = env.step(torch.tensor([spy]))
    v1 = (1.0 / 1.001) * c[s + 1, 0] / o[s + 1, 0]
    bench1 = np.mean(c[s + 1] / c[s]) - 1
    assert float(r1) == pytest.approx(100 * (v1 - 1 - bench1), rel=1e-12)
    # Day s+1: HOLD -> no order, no fee: value drifts close to close.
    _, r2, *_ = env.step(torch.tensor([0]))
    v2 = v1 * c[s + 2, 0] / c[s + 1, 0]
    bench2 = np.mean(c[s + 2] / c[s + 1]) - 1
    assert float(r2) == pytest.approx(100 * (v2 / v1 - 1 - bench2), rel=1e-12)
    assert float(env.cash) == 0.0
    # Day s+2: ALL_SPY again: target equals holdings, so nothing trades and nothing is charged.
    _, r3, *_ = env.step(torch.tensor([spy]))
    v3 = v2 * c[s + 3, 0] / c[s + 2, 0]
    assert float(env.value) == pytest.approx(v3, rel=1e-13)


def test_episode_truncates_and_auto_resets(panel):
    market = prepare_training_market(panel, "next_open")
    env = MarketEnv(market, build_regime_table(tuple(TICKERS)), n_envs=4, episode_length=3, seed=1)
    for _ in range(3):
        obs, reward, term, trunc, info = env.step(torch.zeros(4, dtype=torch.long))
    assert trunc.all() and not term.any()
    assert info["final_obs"].shape == (4, 64)
    assert env.step_in_episode == 0 and torch.all(env.value == 1.0)
    assert not torch.equal(info["final_obs"], obs)  # the final obs is not the reset obs


def test_no_look_ahead_observations_and_rewards(panel):
    """Changing every price after day t leaves every observation and reward up to t unchanged."""
    table = build_regime_table(tuple(TICKERS))
    rng = np.random.default_rng(7)
    close, open_ = panel.close, panel.open
    for t_cut in rng.integers(WARMUP + 50, len(close) - 50, size=5):
        def trajectory(c: pd.DataFrame, o: pd.DataFrame, t_cut: int = int(t_cut)):
            market = prepare_market(c, o, "next_open", WARMUP)
            env = MarketEnv(market, table, n_envs=2, episode_length=t_cut - WARMUP - 5, dtype=torch.float64)
            obs = [env.reset(torch.tensor([WARMUP, WARMUP + 3]))]
            rewards = []
            acts = np.random.default_rng(1).integers(0, table.n_actions, size=(env.episode_length, 2))
            for k in range(env.episode_length - 1):  # decisions on days < t_cut - 3
                o_, r, *_ = env.step(torch.as_tensor(acts[k]))
                obs.append(o_)
                rewards.append(r)
            return torch.stack(obs), torch.stack(rewards)

        shocked_c, shocked_o = close.copy(), open_.copy()
        shocked_c.iloc[t_cut:] *= rng.uniform(0.5, 1.5, size=shocked_c.iloc[t_cut:].shape)
        shocked_o.iloc[t_cut:] *= rng.uniform(0.5, 1.5, size=shocked_o.iloc[t_cut:].shape)
        obs_a, rew_a = trajectory(close, open_)
        obs_b, rew_b = trajectory(shocked_c, shocked_o)
        assert torch.equal(obs_a, obs_b) and torch.equal(rew_a, rew_b)
        # and the shock does reach later days (the test can fail)
        assert not np.allclose(prepare_market(close, open_).features[t_cut:],
                               prepare_market(shocked_c, shocked_o).features[t_cut:])


def test_env_state_roundtrip(panel):
    market = prepare_training_market(panel, "next_open")
    table = build_regime_table(tuple(TICKERS))
    a = MarketEnv(market, table, n_envs=16, episode_length=20, seed=5)
    for _ in range(7):
        a.step(torch.randint(0, 16, (16,)))
    b = MarketEnv(market, table, n_envs=16, episode_length=20, seed=99)
    b.load_state_dict(a.state_dict())
    acts = torch.randint(0, 16, (30, 16))
    for k in range(30):
        oa, ra, *_ = a.step(acts[k])
        ob, rb, *_ = b.step(acts[k])
        assert torch.equal(oa, ob) and torch.equal(ra, rb)


def test_gymnasium_adapters(panel):
    gym = pytest.importorskip("gymnasium")
    from gymnasium.utils.env_checker import check_env

    from rl_strategy.gym_adapters import MarketGymEnv, MarketVectorEnv

    market = prepare_training_market(panel, "next_open")
    table = build_regime_table(tuple(TICKERS))
    env = MarketGymEnv(market, table, episode_length=20)
    check_env(env, skip_render_check=True)
    obs, _ = env.reset(seed=3)
    steps, truncated = 0, False
    while not truncated:
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        steps += 1
    assert steps == 20 and not terminated and env.observation_space.contains(obs)

    venv = MarketVectorEnv(market, table, n_envs=4, episode_length=3)
    obs, _ = venv.reset(seed=0)
    assert obs.shape == (4, 64) and isinstance(venv, gym.vector.VectorEnv)
    for _ in range(3):
        obs, reward, term, trunc, info = venv.step(np.zeros(4, dtype=np.int64))
    assert trunc.all() and info["final_obs"].shape == (4, 64) and reward.shape == (4,)


def test_env_matches_numba_kernel(panel):
    """The numba reference kernel is the independent check of the torch accounting."""
    from rl_strategy.kernel import simulate_weights

    market = prepare_training_market(panel, "next_open")
    table = build_regime_table(tuple(TICKERS))
    n_envs, length, s = 16, 300, market.first_decision
    env = MarketEnv(market, table, n_envs=n_envs, episode_length=length, fees=0.002, slippage=0.001,
                    dtype=torch.float64)
    env.reset(torch.full((n_envs,), s))
    actions = _random_actions(np.random.default_rng(5), length, n_envs, table.n_actions)
    env_values = np.ones((length + 1, n_envs))
    for k in range(length):
        _, _, _, _, info = env.step(torch.as_tensor(actions[k]))
        env_values[k + 1] = (info["final_value"] if k == length - 1 else env.value).numpy()
    o, c = panel.open.to_numpy()[s:s + length + 1], panel.close.to_numpy()[s:s + length + 1]
    w = np.full((n_envs, length + 1, len(TICKERS)), np.nan)
    w[:, :length] = table.weights[actions.T]
    kernel = simulate_weights(o, c, w, fees=0.002, slippage=0.001, execution="next_open", init_cash=1e6) / 1e6
    assert np.max(np.abs(env_values.T / kernel - 1)) <= 1e-9
