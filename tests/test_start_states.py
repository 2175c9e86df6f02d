"""Training that generalises: start-state mix, trailing-window drawdown, entropy schedule (known answers)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rl_strategy.checkpoint import load_checkpoint
from rl_strategy.data import load_market
from rl_strategy.env import MarketEnv, prepare_training_market
from rl_strategy.errors import RLTraderError
from rl_strategy.regimes import build_regime_table
from rl_strategy.settings import PPOSettings
from training.config import load_settings
from training.ppo import ppo_loss
from training.train import build_session, resume_settings, run_training

TICKERS = ["SPY", "QQQ", "IWM"]
TABLE = build_regime_table(tuple(TICKERS))


@pytest.fixture(scope="module")
def market():
    data = load_market(TICKERS, "2015-01-01", "2019-12-31", history_days=60)
    return prepare_training_market(data, "next_open")


def _env(market, n_envs: int, **kwargs) -> MarketEnv:
    return MarketEnv(market, TABLE, n_envs=n_envs, episode_length=kwargs.pop("episode_length", 20),
                     dtype=torch.float64, **kwargs)


def _drifted(market, starts: np.ndarray, w: np.ndarray) -> np.ndarray:
    """[CASH, *assets] weights at the first close of weights `w` (B, n) held since the close before."""
    g = market.pre_drift[starts - 1] * market.post_drift[starts - 1]
    held = np.concatenate([1.0 - w.sum(axis=1, keepdims=True), w * g], axis=1)
    return held / held.sum(axis=1, keepdims=True)


def _start_regimes(env: MarketEnv, obs: torch.Tensor) -> np.ndarray:
    """Which start each env got, read off the first observation's weight slots: -1 = all cash, else the
    regime id whose weights, drifted to the first close, the slots show (exactly one matches)."""
    starts = env.start.numpy()
    slots = obs[:, env.layout.index("weight:CASH"):][:, :len(TICKERS) + 1].numpy()
    ids = np.arange(1, TABLE.n_actions)  # ALL_CASH stands for the cash start
    candidates = np.stack([_drifted(env.market, starts, np.tile(TABLE.weights[i], (len(starts), 1))) for i in ids])
    match = np.abs(candidates - slots[None]).max(axis=2) < 1e-12
    assert np.all(match.sum(axis=0) == 1), "every first observation shows one drifted start portfolio"
    got = ids[match.argmax(axis=0)]
    return np.where(got == TABLE.names.index("ALL_CASH"), -1, got)


def _within_binomial(count: int, n: int, p: float) -> bool:
    return abs(count - n * p) <= 4.5 * np.sqrt(n * p * (1 - p))


def test_start_mix_frequencies_and_drifted_weights(market):
    B, mix = 4096, {"cash": 0.5, "regime": 0.3, "equal": 0.2}
    env = _env(market, B, start_mix=mix, seed=11)
    got = np.concatenate([_start_regimes(env, env.reset()) for _ in range(2)])  # resets draw independently
    invested = [i for i in range(1, TABLE.n_actions) if TABLE.weights[i].sum() > 0]
    eq = TABLE.names.index("EQ_WEIGHT")
    assert len(invested) == 14 and eq in invested
    assert _within_binomial(int((got == -1).sum()), len(got), mix["cash"])
    for i in invested:  # uniform over the regimes holding assets, plus the EQ_WEIGHT starts
        p = mix["regime"] / 14 + (mix["equal"] if i == eq else 0.0)
        assert _within_binomial(int((got == i).sum()), len(got), p), TABLE.names[i]


def test_regime_starts_are_uniform_over_invested_regimes_and_never_all_cash(market):
    B = 4096
    env = _env(market, B, start_mix={"regime": 1.0}, seed=2)
    obs = env.reset()
    got = _start_regimes(env, obs)
    assert not (got == -1).any()  # ALL_CASH (and HOLD) are not among the regime starts
    counts = np.bincount(got, minlength=TABLE.n_actions)[2:]
    assert all(_within_binomial(int(c), B, 1 / 14) for c in counts)
    # the value and the drawdown slot follow the drifted portfolio: peak = max(1, first close's value)
    w = TABLE.weights[got]
    g = market.pre_drift[env.start.numpy() - 1] * market.post_drift[env.start.numpy() - 1]
    value = 1.0 - w.sum(axis=1) + (w * g).sum(axis=1)
    np.testing.assert_allclose(env.value.numpy(), value, rtol=1e-14)
    dd = obs[:, env.layout.index("drawdown")].numpy()
    np.testing.assert_allclose(dd, 5 * (value / np.maximum(value, 1.0) - 1), atol=1e-13)


def test_all_cash_mix_draws_no_random_numbers(market):
    default = _env(market, 64, seed=4)
    explicit = _env(market, 64, seed=4, start_mix={"cash": 1.0, "regime": 0.0, "equal": 0.0})
    state = explicit.generator.get_state()
    explicit.reset(torch.full((64,), market.first_decision + 5))
    assert torch.equal(explicit.generator.get_state(), state)  # explicit starts: nothing drawn at all
    explicit.reset()
    default.reset()
    assert torch.equal(explicit.generator.get_state(), default.generator.get_state())  # only the start days
    acts = torch.randint(0, TABLE.n_actions, (45, 64), generator=torch.Generator().manual_seed(0))
    for k in range(45):  # across two automatic resets
        oa, ra, *_ = default.step(acts[k])
        ob, rb, *_ = explicit.step(acts[k])
        assert torch.equal(oa, ob) and torch.equal(ra, rb)
    mixed = _env(market, 64, seed=4, start_mix={"cash": 0.5, "equal": 0.5})
    state = mixed.generator.get_state()
    mixed.reset(torch.full((64,), market.first_decision + 5))
    assert not torch.equal(mixed.generator.get_state(), state)  # the check can fail


def _drawdown_path(market, window: int, length: int = 60):
    """Values (before the episode: 1, then each close) and drawdown slots along a random path."""
    B = 6
    env = _env(market, B, episode_length=length, drawdown_window=window)
    initial = torch.as_tensor(TABLE.weights[[1, 3, 4, 8, 3, 2]])  # some start invested: first value != 1
    starts = torch.as_tensor(market.first_decision + 37 * np.arange(B))
    obs = env.reset(starts, initial)
    dd_index = env.layout.index("drawdown")
    values, dd = [env.value.numpy().copy()], [obs[:, dd_index].numpy().copy()]
    acts = torch.as_tensor(np.random.default_rng(3).integers(0, TABLE.n_actions, size=(length, B)))
    for k in range(length):
        obs, _, _, _, info = env.step(acts[k])
        last = "final_obs" in info
        values.append((info["final_value"] if last else env.value).numpy().copy())
        dd.append((info["final_obs"] if last else obs)[:, dd_index].numpy().copy())
    return np.array(values), np.array(dd)


@pytest.mark.parametrize("window", [1, 5, 21])
def test_trailing_window_drawdown_matches_numpy(market, window):
    values, dd = _drawdown_path(market, window)
    padded = np.concatenate([np.ones((window - 1, values.shape[1])), values])  # value 1 before the episode
    peak = np.stack([padded[k:k + window].max(axis=0) for k in range(len(values))])  # window incl. today
    np.testing.assert_allclose(dd, 5 * (values / peak - 1), rtol=0, atol=1e-12)
    episode = 5 * (values / np.maximum.accumulate(np.vstack([np.ones(values.shape[1]), values]), axis=0)[1:] - 1)
    assert np.abs(dd - episode).max() > 1e-3  # the window matters on this path (the check can fail)


def test_window_zero_is_the_episode_peak(market):
    values, dd = _drawdown_path(market, 0)
    peak = np.maximum.accumulate(np.vstack([np.ones(values.shape[1]), values]), axis=0)[1:]
    np.testing.assert_allclose(dd, 5 * (values / peak - 1), rtol=0, atol=1e-12)
    longer = _drawdown_path(market, 62)[1]  # every close of the episode and the one before it: the same
    np.testing.assert_array_equal(dd, longer)


def test_env_state_roundtrip_with_window_and_mix(market):
    kwargs = dict(episode_length=20, start_mix={"cash": 0.4, "regime": 0.4, "equal": 0.2}, drawdown_window=7)
    a = MarketEnv(market, TABLE, n_envs=16, seed=5, **kwargs)
    for _ in range(11):  # past one wrap of the ring buffer
        a.step(torch.randint(0, 16, (16,)))
    state = a.state_dict()
    b = MarketEnv(market, TABLE, n_envs=16, seed=99, **kwargs)
    b.load_state_dict(state)
    c = MarketEnv(market, TABLE, n_envs=16, seed=98, **kwargs)
    c.load_state_dict(state)  # a second env loaded from the same state shares nothing with b
    acts = torch.randint(0, 16, (50, 16))
    for k in range(50):  # across two resets: start days and start states come from the restored generator
        oa, ra, *_ = a.step(acts[k])
        ob, rb, *_ = b.step(acts[k])
        assert torch.equal(oa, ob) and torch.equal(ra, rb)
    for k in range(50):
        oc, rc, *_ = c.step(acts[k])
    assert torch.equal(oc, ob) and torch.equal(c.recent_values, b.recent_values)


def test_env_rejects_a_bad_start_mix_or_window(market):
    with pytest.raises(RLTraderError, match="sum"):
        _env(market, 4, start_mix={"cash": 0.5, "regime": 0.2})
    with pytest.raises(RLTraderError, match="start_mix"):
        _env(market, 4, start_mix={"cash": 0.5, "regimes": 0.5})
    with pytest.raises(RLTraderError, match="drawdown_window"):
        _env(market, 4, drawdown_window=-1)


def test_settings_of_the_new_options():
    s = load_settings(None, {"env.start_cash": 0.25, "env.start_regime": 0.5, "env.start_equal": 0.25,
                             "env.drawdown_window": 63, "ppo.ent_coef_end": 0})
    assert s.env.start_mix == {"cash": 0.25, "regime": 0.5, "equal": 0.25} and s.ppo.ent_coef_end == 0.0
    default = load_settings(None, {})
    assert default.env.start_mix == {"cash": 1.0, "regime": 0.0, "equal": 0.0}
    assert default.env.drawdown_window == 0 and default.ppo.ent_coef_end is None
    for bad, match in (({"env.start_cash": 0.5}, "sum to 1"), ({"env.start_cash": 1.5, "env.start_equal": -0.5}, ">= 0"),
                       ({"env.drawdown_window": -1}, "drawdown_window"), ({"ppo.ent_coef_end": -0.1}, "ent_coef_end")):
        with pytest.raises(RLTraderError, match=match) as err:
            load_settings(None, bad)
        assert "\n" not in str(err.value)


def test_loss_uses_the_given_entropy_coefficient():
    cfg = PPOSettings(norm_adv=False, clip_vloss=False, ent_coef=0.5, vf_coef=0.5)
    g = torch.Generator().manual_seed(0)
    logits, adv = torch.randn(8, 4, generator=g), torch.randn(8, generator=g)
    values, returns = torch.randn(8, generator=g), torch.randn(8, generator=g)
    actions = torch.randint(0, 4, (8,), generator=g)
    old_logp = torch.log_softmax(logits, -1).gather(-1, actions[:, None]).squeeze(-1)
    for coef, expected_coef in ((None, 0.5), (0.03, 0.03)):
        p = ppo_loss(logits, values, actions, old_logp, values, adv, returns, cfg, coef)
        torch.testing.assert_close(p.total, p.policy - expected_coef * p.entropy + 0.5 * p.value)


def _tiny(tmp_path, **overrides):
    return load_settings(None, {"ppo.n_envs": 16, "ppo.n_steps": 16, "ppo.minibatches": 2, "env.episode_length": 16,
                                "run.timesteps": 16 * 16 * 4, "run.device": "cpu", "run.out": str(tmp_path),
                                "run.checkpoint_every": 1, **overrides})


def test_entropy_coefficient_decays_linearly(tmp_path):
    s = _tiny(tmp_path / "a", **{"ppo.ent_coef": 0.02, "ppo.ent_coef_end": 0.004})
    history = run_training(build_session(s)).history
    assert [h["ent_coef"] for h in history] == pytest.approx([0.02 + k / 4 * (0.004 - 0.02) for k in range(4)],
                                                             rel=1e-15)
    constant = run_training(build_session(_tiny(tmp_path / "b", **{"ppo.ent_coef": 0.02}))).history
    assert [h["ent_coef"] for h in constant] == [0.02] * 4


def test_resume_is_exact_with_the_new_options(tmp_path):
    new = {"env.start_cash": 0.3, "env.start_regime": 0.5, "env.start_equal": 0.2, "env.drawdown_window": 10,
           "ppo.ent_coef_end": 0.0, "env.episode_length": 32}  # stopped mid-episode, the ring buffer wrapped
    straight = build_session(_tiny(tmp_path / "a", **new))
    run_training(straight)
    part = run_training(build_session(_tiny(tmp_path / "b", **new)), stop_after_updates=1)
    ckpt = load_checkpoint(part.final_checkpoint)
    resumed = build_session(resume_settings(ckpt, None, None, None), resume=ckpt)
    assert resumed.env.drawdown_window == 10 and resumed.env.step_in_episode == 16
    assert resumed.settings.env.start_mix == {"cash": 0.3, "regime": 0.5, "equal": 0.2}
    run_training(resumed)
    for p, q in zip(straight.trainer.policy.parameters(), resumed.trainer.policy.parameters(), strict=True):
        assert torch.equal(p, q)
