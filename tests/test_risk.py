"""Risk limits and overlays: one rule in training, replay and backtest, and still equal to vectorbt."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from rl_strategy.data import load_market
from rl_strategy.env import MarketEnv, prepare_market, prepare_training_market
from rl_strategy.errors import RLTraderError
from rl_strategy.features import WARMUP
from rl_strategy.policy import GRUPolicy
from rl_strategy.portfolio import INIT_CASH, simulate_portfolio, value_before_orders
from rl_strategy.regimes import HOLD, build_regime_table
from rl_strategy.replay import replay
from rl_strategy.risk import MASKED_LOGIT, VOL_ANNUALISATION, action_mask, policy_mask, vol_scale
from rl_strategy.settings import RiskSettings, Settings, validate

TICKERS = ("SPY", "QQQ", "IWM")
TABLE = build_regime_table(TICKERS)
OVERLAYS = {
    "vol_target": RiskSettings(vol_target=0.12, vol_window=20),
    "brake": RiskSettings(drawdown_brake=0.08, brake_exposure=0.4, brake_release=0.02),
    "band": RiskSettings(rebalance_band=0.03),
    "all": RiskSettings(max_asset_weight=0.5, vol_target=0.15, drawdown_brake=0.1, brake_exposure=0.5,
                        rebalance_band=0.02),
}


@pytest.fixture(scope="module", params=["synthetic", "real"])
def panel(request):
    if request.param == "synthetic":
        return load_market(list(TICKERS), "2015-01-01", "2020-12-31", source="synthetic", seed=0, history_days=WARMUP)
    return load_market(list(TICKERS), "2015-01-01", "2020-12-31", source="csv",
                       csv_dir=request.getfixturevalue("market_dir"), history_days=WARMUP)


def test_limits_mask_the_regimes_that_break_them():
    names = np.asarray(TABLE.names)
    cap = action_mask(TABLE, RiskSettings(max_asset_weight=0.5))
    assert set(names[~cap]) == {"ALL_SPY", "ALL_QQQ", "ALL_IWM"}  # 1/2 exactly is allowed
    cash = action_mask(TABLE, RiskSettings(min_cash=0.5))
    assert set(names[cash]) == {"HOLD", "ALL_CASH", "HALF_SPY", "HALF_QQQ", "HALF_IWM", "HALF_EQ"}
    assert np.array_equal(cash, action_mask(TABLE, RiskSettings(max_gross=0.5)))
    assert policy_mask(TABLE, RiskSettings()) is None  # no limit: no mask, the v2 network
    with pytest.raises(RLTraderError, match="no regime that holds assets"):
        action_mask(build_regime_table(("SPY",)), RiskSettings(min_cash=0.6))


def test_risk_settings_are_checked():
    with pytest.raises(RLTraderError, match="drawdown_window"):
        validate(dataclasses.replace(Settings(), risk=RiskSettings(drawdown_brake=0.1)))
    with pytest.raises(RLTraderError, match="vol_window"):
        validate(dataclasses.replace(Settings(), risk=RiskSettings(vol_target=0.1, vol_window=500)))
    with pytest.raises(RLTraderError, match="max_asset_weight"):
        validate(dataclasses.replace(Settings(), risk=RiskSettings(max_asset_weight=0.0)))


def test_masked_policy_never_chooses_a_masked_regime_and_targets_stay_within_limits(panel):
    risk = OVERLAYS["all"]
    mask = policy_mask(TABLE, risk)
    torch.manual_seed(0)
    net = GRUPolicy(64, TABLE.n_actions, 32, mask)
    with torch.no_grad():  # a policy that would love the masked regimes
        net.policy_head.bias[~torch.as_tensor(mask)] = 50.0
    logits, _, _ = net.step(torch.randn(256, 64), net.initial_state(256))
    assert (logits[:, ~torch.as_tensor(mask)] == MASKED_LOGIT).all()
    assert torch.softmax(logits, -1)[:, ~torch.as_tensor(mask)].max() == 0.0
    market = prepare_training_market(panel, "next_open")
    B = 48
    starts = market.first_decision + np.arange(B) * 11
    r = replay(net, market, TABLE, starts=starts, lengths=np.full(B, 300), sample=np.arange(B) % 4 > 0,
               seeds=np.arange(B), initial=None, fees=0.001, slippage=0.0, obs_dim=64, drawdown_window=63, risk=risk)
    assert mask[r.actions[r.actions >= 0]].all()
    placed = r.targets[~np.isnan(r.targets).any(axis=2)]
    assert len(placed) > 1000
    assert placed.max() <= risk.max_asset_weight + 1e-12 and placed.sum(axis=1).max() <= risk.max_gross + 1e-12
    assert (1.0 - placed.sum(axis=1)).min() >= risk.min_cash - 1e-12


def _forced_paths(market, risk, execution, B=6, L=500, seed=0):
    rng = np.random.default_rng(seed)
    actions = rng.integers(0, TABLE.n_actions, size=(L, B))
    actions[rng.random((L, B)) < 0.5] = HOLD
    starts = market.first_decision + np.arange(B) * 37
    return replay(None, market, TABLE, starts=starts, lengths=np.full(B, L), sample=np.zeros(B, bool),
                  seeds=np.zeros(B), initial=None, fees=0.001, slippage=0.0005, obs_dim=64, forced=actions,
                  drawdown_window=63, risk=risk)


def _vectorbt_equity(panel, r, execution):
    """vectorbt fed the orders the environment placed; value per path at each close from the start."""
    close, open_ = panel.close, panel.open
    T, B, n = len(close), r.targets.shape[1], r.targets.shape[2]
    w = np.full((T, B, n), np.nan)
    for i, s in enumerate(r.starts):
        w[s:s + r.lengths[i], i] = r.targets[:r.lengths[i], i]
    cols = pd.MultiIndex.from_product([[f"P{i}" for i in range(B)], list(TICKERS)], names=["path", "asset"])
    weights = pd.DataFrame(w.reshape(T, B * n), index=close.index, columns=cols)
    pf = simulate_portfolio(weights, open_, close, fees=0.001, slippage=0.0005, execution=execution)
    value = (value_before_orders(pf, close, execution) / INIT_CASH).to_numpy()
    return np.stack([value[s:s + r.lengths[i] + 1, i] for i, s in enumerate(r.starts)], axis=1)


@pytest.mark.parametrize("execution", ["next_open", "close"])
@pytest.mark.parametrize("overlay", list(OVERLAYS))
def test_each_overlay_equals_vectorbt_on_its_weights(panel, overlay, execution):
    market = prepare_training_market(panel, execution)
    r = _forced_paths(market, OVERLAYS[overlay], execution)
    env_values = r.values
    np.testing.assert_allclose(env_values, _vectorbt_equity(panel, r, execution), rtol=1e-9, atol=0)
    plain = _forced_paths(market, None, execution)
    changed = np.nan_to_num(r.targets, nan=-1) != np.nan_to_num(plain.targets, nan=-1)
    assert changed.any()  # the overlay did change orders (so the parity above is not the v2 one)


def test_vol_target_scales_by_the_trailing_volatility_and_reads_no_future(panel):
    target, window = 0.10, 20
    market = prepare_market(panel.close, panel.open, "next_open", panel.history_rows())
    scale = vol_scale(market.pre_drift * market.post_drift, TABLE.weights, target, window)
    t = market.first_decision + 250
    eq = TABLE.names.index("EQ_WEIGHT")
    daily = (panel.close / panel.close.shift(1) - 1.0).mean(axis=1).to_numpy()  # EQ_WEIGHT rebalanced daily
    vol = daily[t - window + 1:t + 1].std(ddof=1) * np.sqrt(VOL_ANNUALISATION)
    assert scale[t, eq] == pytest.approx(min(1.0, target / vol), rel=1e-12)
    assert scale[t, TABLE.names.index("ALL_CASH")] == 1.0
    shocked = panel.close.copy()
    shocked.iloc[t + 1:] *= np.exp(np.random.default_rng(1).normal(0, 0.05, shocked.iloc[t + 1:].shape))
    m2 = prepare_market(shocked, panel.open * (shocked / panel.close), "next_open", panel.history_rows())
    scale2 = vol_scale(m2.pre_drift * m2.post_drift, TABLE.weights, target, window)
    np.testing.assert_array_equal(scale[:t + 1], scale2[:t + 1])
    assert not np.allclose(scale[t + 2:], scale2[t + 2:])
    # The env orders exactly the scaled regime.
    r = replay(None, market, TABLE, starts=np.array([t]), lengths=np.array([1]), sample=np.zeros(1, bool),
               seeds=np.zeros(1), initial=None, fees=0.0, slippage=0.0, obs_dim=64, forced=np.array([[eq]]),
               risk=RiskSettings(vol_target=target, vol_window=window))
    np.testing.assert_allclose(r.targets[0, 0], TABLE.weights[eq] * scale[t, eq], rtol=1e-12)


def _one_asset(prices: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame]:
    index = pd.bdate_range("2020-01-01", periods=len(prices))
    close = pd.DataFrame({"SPY": prices}, index=index)
    return close, close.copy()


def test_drawdown_brake_caps_exposure_until_recovery():
    path = np.r_[np.full(70, 100.0), 100 * 0.98 ** np.arange(1, 16), np.linspace(74, 110, 40), np.full(20, 110.0)]
    close, open_ = _one_asset(path)
    table = build_regime_table(("SPY",))
    market = prepare_market(close, open_, "close", WARMUP)
    risk = RiskSettings(drawdown_brake=0.1, brake_exposure=0.3, brake_release=0.0)
    L = market.last_decision - WARMUP + 1
    forced = np.full((L, 1), table.names.index("ALL_SPY"))
    r = replay(None, market, table, starts=np.array([WARMUP]), lengths=np.array([L]), sample=np.zeros(1, bool),
               seeds=np.zeros(1), initial=None, fees=0.0, slippage=0.0, obs_dim=64, forced=forced,
               drawdown_window=63, risk=risk)
    values = r.values[:, 0]  # value at each decision's close (row 0: before the first)
    on, expected = False, []
    for k in range(L):  # the brake's rule, written out: on at 10% below the 63-close peak, off back at the peak
        dd = 1.0 - values[k] / max(1.0, values[max(0, k - 62):k + 1].max()) if k < 62 else \
            1.0 - values[k] / values[k - 62:k + 1].max()
        on = dd >= 0.1 or (on and dd > 0.0)
        expected.append(0.3 if on else 1.0)
    gross = np.nansum(r.targets[:, 0], axis=1)
    np.testing.assert_allclose(gross, expected, rtol=1e-12)
    assert 0.3 in expected and expected[-1] == 1.0  # it engaged, and released after the recovery


def test_rebalance_band_skips_small_rebalances(panel):
    market = prepare_training_market(panel, "close")
    eq = TABLE.names.index("EQ_WEIGHT")
    L, start = 400, market.first_decision
    forced = np.full((L, 1), eq)
    run = lambda risk: replay(None, market, TABLE, starts=np.array([start]), lengths=np.array([L]),  # noqa: E731
                              sample=np.zeros(1, bool), seeds=np.zeros(1), initial=None, fees=0.0, slippage=0.0,
                              obs_dim=64, forced=forced, risk=risk)
    daily, banded = run(None), run(RiskSettings(rebalance_band=0.02))
    assert not np.isnan(daily.targets).any()  # v2: a re-chosen regime is rebalanced every day
    placed = ~np.isnan(banded.targets[:, 0, 0])
    assert placed[0] and 2 <= placed.sum() < L // 4
    # The band written out: fully invested at 1/3 each after an order at the close, drifting with the
    # closes; an order exactly when some weight has drifted 2% or more away.
    close = panel.close.to_numpy()[start:start + L]
    held = np.full(3, 1 / 3)
    for k in range(1, L):
        held = held * close[k] / close[k - 1]
        held /= held.sum()
        assert placed[k] == (np.abs(held - 1 / 3).max() >= 0.02), k
        if placed[k]:
            held = np.full(3, 1 / 3)


def test_env_with_overlays_resumes_exactly(panel):
    market = prepare_training_market(panel, "next_open")
    make = lambda: MarketEnv(market, TABLE, n_envs=16, episode_length=64, seed=5, drawdown_window=20,  # noqa: E731
                             risk=OVERLAYS["all"])
    a, b = make(), make()
    rng = np.random.default_rng(0)
    acts = torch.as_tensor(rng.integers(0, TABLE.n_actions, size=(100, 16)))
    for k in range(40):
        a.step(acts[k])
    b.load_state_dict(a.state_dict())
    for k in range(40, 100):
        oa, ra, *_ = a.step(acts[k])
        ob, rb, *_ = b.step(acts[k])
        assert torch.equal(oa, ob) and torch.equal(ra, rb)


RISKY_CONFIG = """
data: {source: synthetic}
periods: {train_start: 2015-01-01, train_end: 2018-12-31, test_start: 2019-01-01, test_end: 2020-12-31}
env: {episode_length: 64, drawdown_window: 63}
risk: {max_asset_weight: 0.5, vol_target: 0.12, rebalance_band: 0.01, drawdown_brake: 0.1, brake_exposure: 0.5}
ppo: {n_envs: 32, n_steps: 32, minibatches: 4, hidden: 32}
run: {timesteps: 2048, device: cpu}
"""


@pytest.fixture(scope="module")
def risky_checkpoint(tmp_path_factory):
    from training.config import load_settings
    from training.train import build_session, run_training

    out = tmp_path_factory.mktemp("risky")
    cfg = out / "risky.yaml"
    cfg.write_text(RISKY_CONFIG)
    settings = load_settings(cfg, {"run.out": str(out)})
    return run_training(build_session(settings)).final_checkpoint


def test_a_constrained_checkpoint_keeps_its_mask_and_backtests_with_overlaid_baselines(risky_checkpoint, tmp_path):
    import json

    from typer.testing import CliRunner

    from rl_strategy.checkpoint import load_checkpoint
    from rl_strategy.strategy import RLPolicy
    from rltrader.cli import app

    ck = load_checkpoint(risky_checkpoint)
    mask = ck.model_state["action_mask"].numpy()
    assert not mask[TABLE.names.index("ALL_SPY")] and mask[TABLE.names.index("EQ_WEIGHT")]
    assert RLPolicy(ck).net.action_mask is not None
    report = tmp_path / "r.json"
    res = CliRunner().invoke(app, ["backtest", "--model", str(risky_checkpoint), "--samples", "4", "--null-draws", "8",
                                   "--origins", "none", "--baseline-overlay", "--output", str(report)])
    assert res.exit_code == 0, res.output
    r = json.loads(report.read_text())
    assert r["model"]["risk"]["masked_regimes"] == ["ALL_SPY", "ALL_QQQ", "ALL_IWM"]
    assert r["readout"]["baseline_overlay"] is True and r["parity_max_rel_diff"] < 1e-9
    returns = pd.read_csv(tmp_path / "r.returns.csv", index_col=0)
    plain = tmp_path / "p.json"
    res = CliRunner().invoke(app, ["backtest", "--model", str(risky_checkpoint), "--samples", "4", "--null-draws", "8",
                                   "--origins", "none", "--output", str(plain)])
    assert res.exit_code == 0, res.output
    unconstrained = pd.read_csv(tmp_path / "p.returns.csv", index_col=0)
    np.testing.assert_allclose(returns["RL"], unconstrained["RL"], rtol=0, atol=1e-15)  # RL is the same either way
    # A 12% volatility target (and the brake) on ALL_SPY (~20% vol) leaves it less volatile than unconstrained.
    assert returns["ALL_SPY"].std() < 0.9 * unconstrained["ALL_SPY"].std()


def test_baseline_overlay_needs_an_overlay(tiny_checkpoints):
    from backtests.evaluate import EvalOptions, run_backtest
    from rl_strategy.strategy import RLPolicy

    with pytest.raises(RLTraderError, match="no risk overlay"):
        run_backtest(RLPolicy.load(tiny_checkpoints[0]), None, options=EvalOptions(baseline_overlay=True))


def test_hold_keeps_the_regime_at_the_day_s_volatility_scale(panel):
    """Buy once then HOLD: the vol target re-scales the held regime, trading only past the band."""
    market = prepare_training_market(panel, "next_open")
    spy, L, start = TABLE.names.index("ALL_SPY"), 500, market.first_decision
    forced = np.full((L, 1), HOLD)
    forced[0] = spy
    risk = RiskSettings(vol_target=0.12, vol_window=20, rebalance_band=0.02)
    r = replay(None, market, TABLE, starts=np.array([start]), lengths=np.array([L]), sample=np.zeros(1, bool),
               seeds=np.zeros(1), initial=None, fees=0.001, slippage=0.0, obs_dim=64, forced=forced, risk=risk)
    scale = vol_scale(market.pre_drift * market.post_drift, TABLE.weights, 0.12, 20)[start:start + L, spy]
    placed = ~np.isnan(r.targets[:, 0, 0])
    assert placed[0] and 5 <= placed.sum() < L // 2
    np.testing.assert_allclose(r.targets[placed, 0, 0], scale[placed], rtol=1e-12)
    np.testing.assert_array_equal(r.targets[placed, 0, 1:], 0.0)
