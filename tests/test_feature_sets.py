"""Feature sets from config (`env.features`): past-only values with fixed scaling, signal tickers that
load with the universe but are never traded, the observation layout, and one definition of the
features from training through the checkpoint to the backtest replay."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from backtests.evaluate import EvalOptions, backtest_settings, load_backtest_data, run_backtest
from rl_strategy.checkpoint import load_checkpoint
from rl_strategy.data import load_market, load_panel_cache, read_yfinance_csv, save_panel_cache
from rl_strategy.env import MarketEnv, prepare_market
from rl_strategy.errors import RLTraderError
from rl_strategy.features import FEATURE_SETS, feature_names, market_features, observation_layout
from rl_strategy.regimes import build_regime_table
from rl_strategy.strategy import RLPolicy
from training.config import load_settings
from training.train import build_session, run_training

TICKERS = ["SPY", "QQQ", "IWM"]
ALL_SETS = list(FEATURE_SETS)
SMALL = {"ppo.n_envs": 64, "ppo.n_steps": 32, "ppo.minibatches": 4, "env.episode_length": 64,
         "run.timesteps": 64 * 32 * 2, "run.device": "cpu"}
READOUT = EvalOptions(samples=4, null_draws=4, horizon_days=40)


@pytest.fixture(scope="module")
def frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Synthetic traded closes and signal closes, plus a made-up ^TNX (the synthetic market has none)."""
    d = load_market(TICKERS, "2016-01-01", "2017-12-31", history_days=200, signals=["^VIX", "TLT", "GLD"])
    t = np.arange(len(d.close))
    tnx = 2.5 + 0.8 * np.sin(t / 40.0) + 0.05 * np.random.default_rng(0).standard_normal(len(t))
    return d.close, d.signal_close.assign(**{"^TNX": tnx})


@pytest.mark.parametrize("name", ALL_SETS)
def test_each_set_is_past_only(frames, name):
    """Day t's values are unchanged when every price (and date) after t changes; later days do change."""
    close, signals = frames
    base = market_features(close, [name], signals)
    rng = np.random.default_rng(5)
    for t in rng.integers(210, len(close) - 30, size=3):
        later = slice(int(t) + 1, None)
        c, s = close.copy(), signals.copy()
        c.iloc[later] *= rng.uniform(0.7, 1.3, size=c.iloc[later].shape)
        s.iloc[later] *= rng.uniform(0.7, 1.3, size=s.iloc[later].shape)
        dates = close.index[:t + 1].append(close.index[later] + pd.offsets.BDay(3))  # the calendar too
        c.index = s.index = dates
        shocked = market_features(c, [name], s)
        np.testing.assert_array_equal(shocked[:t + 1], base[:t + 1])
        assert not np.array_equal(shocked[t + 1:], base[t + 1:])  # the change reaches later days


def test_hand_computed_values_of_each_set():
    """One day (the last of 230) on a tiny frame of exponential prices, computed by hand."""
    idx = pd.bdate_range("2023-01-02", periods=230)  # ends Friday 2023-11-17
    t = np.arange(230.0)
    close = pd.DataFrame({"SPY": 100 * np.exp(0.001 * t), "QQQ": 100 * np.exp(0.002 * t),
                          "IWM": 100 * np.exp(-0.001 * t)}, index=idx)
    vix = np.full(230, 20.0)
    vix[-1] = 30.0
    signals = pd.DataFrame({"^VIX": vix, "^TNX": 2.0 + 0.01 * t, "TLT": 100 * np.exp(0.002 * t),
                            "GLD": 50 * np.exp(-0.001 * t)}, index=idx)
    day = {name: market_features(close, [name], signals)[-1] for name in ALL_SETS}
    approx = lambda values: pytest.approx(values, abs=1e-9)  # noqa: E731

    ma = lambda g, w: 1.0 / np.mean(np.exp(-g * np.arange(w))) - 1.0  # noqa: E731 close / w-day mean - 1
    assert day["core"][:8] == approx([0.1, 0.1 * np.sqrt(5), 0.1 * np.sqrt(20), 0.1 * np.sqrt(60), -2.0, -2.0,
                                      ma(0.001, 20) / 0.05, ma(0.001, 50) / 0.10])
    assert day["vix"] == approx([np.log(1.5) / 0.3, np.log(1.5) / (0.08 * np.sqrt(5)),
                                 np.log(1.5) / (0.08 * np.sqrt(20)), (30 / ((59 * 20 + 30) / 60) - 1) / 0.2])
    assert day["rates"] == approx([(4.29 - 3) / 1.5, 0.20 / 0.25, 0.60 / 0.5])
    assert day["cross_asset"] == approx([0.2 * np.sqrt(5), 0.2 * np.sqrt(20), -2.0,
                                         -0.1 * np.sqrt(5), -0.1 * np.sqrt(20), -2.0])
    # SPY and QQQ rise (above their 200-day average), IWM falls; 126-day momentum QQQ > SPY > IWM.
    assert day["trend"] == approx([1.0, 0.0, 1.0, 1.0, -1.0, -1.0])
    # November: angle 2 pi 10 / 12; the 13th weekday of the month is no turn of the month.
    assert day["calendar"] == approx([-np.sqrt(3) / 2, 0.5, 0.0])
    turn = market_features(close, ["calendar"], signals)[:, 2]
    flags = pd.Series(turn, index=idx)[["2023-06-29", "2023-06-30", "2023-07-03", "2023-07-05", "2023-07-06"]]
    assert flags.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]  # last weekday, first three weekdays, fourth
    # The warm-up rows are 0, never a partial window.
    assert not market_features(close, ["trend"], signals)[:200].any()


def test_layout_names_and_obs_dim_growth(frames):
    close, signals = frames
    table = build_regime_table(tuple(TICKERS))
    names = feature_names(ALL_SETS, TICKERS)
    assert len(names) == 24 + 4 + 3 + 6 + 6 + 3
    assert names[24:31] == ["vix:level", "vix:chg_5d", "vix:chg_20d", "vix:vs_mean_60d", "rates:level",
                            "rates:chg_20d", "rates:chg_60d"]
    assert names[31] == "cross_asset:TLT:ret_5d" and names[37:39] == ["SPY:above_ma200", "SPY:mom_rank_126d"]
    assert names[-3:] == ["calendar:month_sin", "calendar:month_cos", "calendar:turn_of_month"]
    assert observation_layout(TICKERS, table.names, 64) == observation_layout(TICKERS, table.names, 64, ["core"])
    layout = observation_layout(TICKERS, table.names, 64, ALL_SETS)
    assert len(layout) == 46 + 4 + 1 + 16 and layout[:46] == names and layout[46] == "weight:CASH"  # grown past 64
    assert observation_layout(TICKERS, table.names, 80, ALL_SETS) == layout + ["pad"] * 13

    market = prepare_market(close, None, "close", 0, ALL_SETS, signals)
    assert market.first_decision == 200  # the trend set's 200-day average
    env = MarketEnv(market, table, n_envs=2, episode_length=10, obs_dim=64, dtype=torch.float64)
    obs = env.reset(torch.tensor([300, 301]))
    assert env.obs_dim == 67 and env.layout == layout and obs.shape == (2, 67)
    np.testing.assert_array_equal(obs[:, :46].numpy(), market.features[[300, 301]])
    assert obs[0, layout.index("weight:CASH")] == 1.0


def test_a_signal_the_source_lacks_is_a_one_line_error(frames):
    with pytest.raises(RLTraderError, match=r"feature set rates needs \^TNX, which the synthetic market lacks"):
        load_settings(None, {"env.features": ["core", "rates"]})
    with pytest.raises(RLTraderError, match=r"feature set vix needs the closes of \^VIX"):
        market_features(frames[0], ["core", "vix"])
    with pytest.raises(RLTraderError, match="env.features must be distinct feature sets"):
        load_settings(None, {"env.features": ["core", "macro"]})


def test_signals_load_with_the_universe_but_are_never_traded(tmp_path):
    plain = load_market(TICKERS, "2019-01-01", "2019-12-31", history_days=60)
    both = load_market(TICKERS, "2019-01-01", "2019-12-31", history_days=60, signals=["^VIX", "SPY", "TLT"])
    assert both.tickers == tuple(TICKERS) and both.signals == ("^VIX", "TLT")  # a traded ticker is no signal
    pd.testing.assert_frame_equal(both.close, plain.close)
    assert list(both.signal_close.columns) == ["^VIX", "TLT"] and both.fingerprint != plain.fingerprint
    cache = save_panel_cache(both, tmp_path / "panel.pt")
    back = load_panel_cache(cache, tickers=TICKERS, signals=["^VIX"])
    assert back.signals == both.signals and back.fingerprint == both.fingerprint
    pd.testing.assert_frame_equal(back.signal_close, both.signal_close, check_freq=False)
    with pytest.raises(RLTraderError, match=r"holds no GLD .*--signals GLD"):
        load_panel_cache(cache, tickers=TICKERS, signals=["GLD"])


def test_training_and_backtest_with_feature_sets(tmp_path):
    """Train 2 updates with signals, then replay the checkpoint in the backtest: same features, exact parity."""
    sets = ["core", "vix", "cross_asset", "trend", "calendar"]
    settings = load_settings(None, SMALL | {"env.features": sets, "env.obs_dim": 32, "run.out": str(tmp_path),
                                            "periods.val_start": "2019-01-01", "periods.val_end": "2019-12-31",
                                            "run.eval_horizon_days": 40, "run.eval_samples": 2})
    session = build_session(settings)
    assert session.data.signals == ("^VIX", "TLT", "GLD") and session.data.history_rows() == 200
    result = run_training(session)
    ckpt = load_checkpoint(result.final_checkpoint)
    assert ckpt.settings.env.features == sets and ckpt.spec.obs_dim == 43 + 4 + 1 + 16  # grown from 32
    assert ckpt.spec.layout[:43] == tuple(feature_names(sets, TICKERS))
    assert result.best_checkpoint is not None

    policy = RLPolicy.load(result.final_checkpoint)
    assert policy.signal_tickers == {"^VIX": "vix", "TLT": "cross_asset", "GLD": "cross_asset"}
    data = load_backtest_data(backtest_settings(ckpt), policy.assets, "2020-01-01", "2021-06-30")
    assert data.tickers == tuple(TICKERS) and data.signals == ("^VIX", "TLT", "GLD") and data.history_rows() == 200
    bt = run_backtest(policy, data, options=READOUT)
    assert bt.parity_max_rel_diff <= 1e-9
    assert list(bt.weights["RL"].columns) == TICKERS  # signals are never traded
    run = policy.run(data.close, data.open, start=data.period_start, signals=data.signal_close)
    pd.testing.assert_frame_equal(run.weights, bt.weights["RL"], check_names=False)
    with pytest.raises(RLTraderError, match=r"reads \^VIX, TLT, GLD \(feature sets vix, cross_asset\)"):
        policy.run(data.close, data.open)


def test_rates_on_the_real_csvs(market_dir, tmp_path):
    """^TNX from ../shared: aligned on the traded calendar (bond holidays filled flat), hand-checked
    against the raw CSV, then trained on and backtested with exact parity."""
    data = load_market(TICKERS, "2016-01-01", "2016-12-31", source="csv", csv_dir=market_dir, history_days=60,
                       signals=["^TNX"])
    assert data.filled == {"SPY": 0, "QQQ": 0, "IWM": 0, "^TNX": 1}  # Veterans Day: stocks trade, bonds do not
    raw = read_yfinance_csv(market_dir / "^TNX.csv", "^TNX")["Close"]
    tnx = raw.reindex(data.panel.index, method="ffill")  # the flat gap rule: the last earlier close
    assert data.signal_close.loc["2016-11-11", "^TNX"] == raw.loc["2016-11-10"]
    pd.testing.assert_series_equal(data.signal_close["^TNX"], tnx, check_names=False, check_freq=False)
    row = market_features(data.close, ["rates"], data.signal_close)
    for t in (100, len(tnx) - 1):
        y = tnx.to_numpy()
        assert row[t] == pytest.approx([(y[t] - 3) / 1.5, (y[t] - y[t - 20]) / 0.25, (y[t] - y[t - 60]) / 0.5],
                                       abs=1e-12)

    settings = load_settings(None, SMALL | {"env.features": ["core", "rates"], "data.source": "csv",
                                            "data.csv_dir": str(market_dir), "run.out": str(tmp_path)})
    policy = RLPolicy.load(run_training(build_session(settings)).final_checkpoint)
    assert policy.signal_tickers == {"^TNX": "rates"}
    test = load_backtest_data(backtest_settings(policy.checkpoint), policy.assets, "2020-01-01", "2020-12-31")
    assert test.signals == ("^TNX",)
    assert run_backtest(policy, test, options=READOUT).parity_max_rel_diff <= 1e-9
