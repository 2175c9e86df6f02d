"""The policy network and the recurrent PPO trainer: values, not just "it ran"."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from rl_strategy.checkpoint import load_checkpoint, save_checkpoint
from rl_strategy.errors import RLTraderError
from rl_strategy.policy import GRUPolicy
from rl_strategy.settings import PPOSettings
from training.config import load_settings
from training.ppo import compute_gae, ppo_loss
from training.train import build_session, load_training_data, run_training


def test_v2_parameter_count():
    assert sum(p.numel() for p in GRUPolicy(64, 16, 128).parameters()) == 109_841


def test_gae_by_hand():
    gamma, lam = 0.9, 0.8
    rewards = torch.tensor([[1.0], [0.0], [2.0]])
    values = torch.tensor([[0.5], [1.0], [1.5]])
    dones = torch.tensor([[0.0], [1.0], [0.0]])  # the episode ends after step 1
    next_value = torch.tensor([2.0])
    adv, ret = compute_gae(rewards, values, dones, next_value, gamma, lam)
    d2 = 2.0 + 0.9 * 2.0 - 1.5          # 2.3
    d1 = 0.0 - 1.0                      # no bootstrap across the episode end
    d0 = 1.0 + 0.9 * 1.0 - 0.5          # 1.4
    a2, a1 = d2, d1
    a0 = d0 + gamma * lam * a1
    torch.testing.assert_close(adv.squeeze(1), torch.tensor([a0, a1, a2]))
    torch.testing.assert_close(ret, adv + values)


def test_clipped_loss_by_hand():
    cfg = PPOSettings(norm_adv=False, clip_coef=0.2, clip_vloss=False, ent_coef=0.0, vf_coef=0.5)
    logits = torch.log(torch.tensor([[0.5, 0.5], [0.9, 0.1]]))
    actions = torch.tensor([0, 0])
    old_logp = torch.log(torch.tensor([0.25, 0.9]))   # ratios 2.0 and 1.0
    adv = torch.tensor([1.0, -1.0])
    values, returns = torch.tensor([0.0, 1.0]), torch.tensor([1.0, 1.0])
    parts = ppo_loss(logits, values, actions, old_logp, values, adv, returns, cfg)
    # sample 0: ratio 2 clipped to 1.2 for a positive advantage -> -1.2; sample 1: ratio 1 -> +1
    assert parts.policy.item() == pytest.approx((-1.2 + 1.0) / 2)
    assert parts.value.item() == pytest.approx(0.5 * (1.0 + 0.0) / 2)
    assert parts.clip_fraction.item() == pytest.approx(0.5)
    assert parts.approx_kl.item() == pytest.approx(((2 - 1) - torch.log(torch.tensor(2.0)).item()) / 2)


def _settings(source, tmp_path, **ppo):
    """Small settings on `source` (the `source` fixture, or a path to the real CSVs)."""
    if not isinstance(source, dict):
        source = {"source": "csv", "csv_dir": str(source)}
    s = load_settings(None, {"data.source": source["source"], "data.csv_dir": source.get("csv_dir"), "ppo.n_envs": 32,
                             "ppo.n_steps": 16, "ppo.minibatches": 4, "env.episode_length": 32,
                             "run.timesteps": 32 * 16 * 3, "run.device": "cpu", "run.out": str(tmp_path / "ck"),
                             "run.checkpoint_every": 1})
    s.ppo = dataclasses.replace(s.ppo, **ppo)
    return s


@pytest.mark.parametrize("episode_length", [32, 8])  # longer and shorter than the rollout
def test_sequence_minibatch_reproduces_rollout_logprobs(source, tmp_path, episode_length):
    s = _settings(source, tmp_path)
    s.env.episode_length = episode_length
    tr = build_session(s).trainer
    tr.collect()
    tr.collect()  # the second rollout starts mid-episode (or at a boundary) with a stored state
    buf = tr.buf
    obs, actions = tr._sequences(buf.obs), tr._sequences(buf.actions)
    states = buf.segment_states.transpose(0, 1).reshape(1, -1, tr.policy.hidden)
    with torch.no_grad():
        logits, values = tr.policy.sequence(obs, states)
    logp = torch.log_softmax(logits, -1).gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(logp, tr._sequences(buf.logprobs), atol=1e-6, rtol=0)
    torch.testing.assert_close(values, tr._sequences(buf.values), atol=1e-6, rtol=0)


def test_truncation_bootstraps_final_value(source, tmp_path):
    s = _settings(source, tmp_path)
    s.env.episode_length = 16  # every rollout ends exactly at a truncation
    session = build_session(s)
    tr, env = session.trainer, session.env
    seen = {}
    original = env.step

    def spy(actions):
        out = original(actions)
        if "final_obs" in out[4]:
            seen["reward"], seen["final_obs"] = out[1].clone(), out[4]["final_obs"].clone()
        return out

    env.step = spy
    tr.collect()
    state = tr.buf.segment_states[0]
    with torch.no_grad():  # replay the GRU to the last step to get its state, then V(final obs)
        _, _, h = tr.policy.step(tr.buf.obs[0], state)
        for k in range(1, 16):
            _, _, h = tr.policy.step(tr.buf.obs[k], h)
        v_final = tr.policy.step(seen["final_obs"], h)[1]
    torch.testing.assert_close(tr.buf.rewards[-1], seen["reward"] + s.ppo.gamma * v_final, atol=1e-5, rtol=0)
    assert torch.all(tr.buf.dones[-1] == 1.0) and torch.all(tr.buf.dones[:-1] == 0.0)


def _weights(policy):
    return torch.cat([p.detach().flatten() for p in policy.parameters()])


def test_same_seed_same_weights(source, tmp_path):
    runs = []
    for i in range(2):
        session = build_session(_settings(source, tmp_path / str(i)))
        run_training(session)
        runs.append(_weights(session.trainer.policy))
    assert torch.equal(runs[0], runs[1])
    other = _settings(source, tmp_path / "x")
    other.run.seed = 2
    session = build_session(other)
    run_training(session)
    assert not torch.equal(runs[0], _weights(session.trainer.policy))


def test_resume_equals_uninterrupted(source, tmp_path):
    straight = build_session(_settings(source, tmp_path / "a"))
    run_training(straight)
    first = build_session(_settings(source, tmp_path / "b"))
    part = run_training(first, stop_after_updates=1)
    assert part.interrupted
    ckpt = load_checkpoint(part.final_checkpoint)
    from training.train import resume_settings

    resumed = build_session(resume_settings(ckpt, None, None, None), resume=ckpt)
    assert resumed.trainer.updates_done == 1
    run_training(resumed)
    assert torch.equal(_weights(straight.trainer.policy), _weights(resumed.trainer.policy))


def test_checkpoint_refusals(source, tmp_path):
    session = build_session(_settings(source, tmp_path))
    path = save_checkpoint(session.payload(), tmp_path / "ok.pt")
    ck = load_checkpoint(path)
    assert ck.spec.parameters == 109_841 and ck.assets == ("SPY", "QQQ", "IWM")
    assert ck.settings == session.settings and ck.training_data.fingerprint == session.data.fingerprint

    with pytest.raises(RLTraderError, match="trained on SPY,QQQ,IWM but the data holds SPY,TLT"):
        ck.check_universe(("SPY", "TLT"))
    with pytest.raises(RLTraderError, match="observations of size 64"):
        ck.check_universe(("SPY", "QQQ", "IWM"), obs_dim=80)

    edited = torch.load(path, weights_only=True)
    edited["model"]["policy_head.bias"] += 1.0  # a payload edited without the digest
    torch.save(edited, tmp_path / "edited.pt")
    with pytest.raises(RLTraderError, match="integrity"):
        load_checkpoint(tmp_path / "edited.pt")

    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2: len(raw) // 2 + 64] = b"\x00" * 64
    (tmp_path / "corrupt.pt").write_bytes(bytes(raw))
    with pytest.raises(RLTraderError):
        load_checkpoint(tmp_path / "corrupt.pt")

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"format": "x", "evil": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(RLTraderError, match="cannot be read safely"):
        load_checkpoint(tmp_path / "evil.pt")
    (tmp_path / "text.pt").write_text("not a checkpoint")
    with pytest.raises(RLTraderError):
        load_checkpoint(tmp_path / "text.pt")


def test_entropy_does_not_collapse_on_real_data(market_dir, tmp_path):
    s = _settings(market_dir, tmp_path)
    s.ppo = dataclasses.replace(s.ppo, learning_rate=1e-3)
    s.run.timesteps = 32 * 16 * 8
    result = run_training(build_session(s))
    entropies = [h["entropy"] for h in result.history]
    assert len(entropies) == 8
    assert min(entropies) > 1.5  # uniform over 16 regimes is 2.77; a collapsed policy is near 0
    assert entropies[-1] < entropies[0]  # but it does learn something


def test_ctrl_c_saves_a_resumable_checkpoint(source_args, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "run"
    cmd = [sys.executable, "-c", "import sys; from rltrader.cli import main; sys.argv[0] = 'rltrader'; main()",
           "train", *source_args, "--n-envs", "64", "--timesteps",
           "100000000", "--device", "cpu", "--out", str(out), "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:  # wait for the first finished update
        metrics = list(out.glob("metrics_*.csv"))
        if metrics and len(metrics[0].read_text().splitlines()) >= 2:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    saved = list(out.glob("model_step_*.pt"))
    assert len(saved) == 1 and "--resume" in stderr
    ckpt = load_checkpoint(saved[0])
    assert ckpt.progress.timesteps > 0 and ckpt.trainer_state["updates_done"] >= 1


def test_non_finite_loss_stops_with_one_line_error(source, tmp_path, monkeypatch):
    from training.ppo import PPOTrainer, TrainingDiverged

    session = build_session(_settings(source, tmp_path))

    def boom(self):
        raise TrainingDiverged("loss became non-finite at update 1")

    monkeypatch.setattr(PPOTrainer, "update", boom)
    with pytest.raises(RLTraderError, match="training stopped: loss became non-finite.*last good checkpoint"):
        run_training(session)
    assert not list((tmp_path / "ck").glob("model_final_*.pt"))


def test_other_universe_from_config_alone(source, tmp_path):
    """Bonds and gold: a new ticker list changes the regime table and observation, no code."""
    s = _settings(source, tmp_path)
    s.data.tickers = ["SPY", "TLT", "GLD", "IWM"]
    s.run.timesteps = 32 * 16
    session = build_session(s)
    assert session.env.regimes.n_actions == 4 + 3 * 4 + 6  # 22 regimes for 4 assets
    assert session.env.layout[32] == "weight:CASH" and len(session.env.layout) == 64
    result = run_training(session)
    ckpt = load_checkpoint(result.final_checkpoint)
    assert ckpt.assets == ("SPY", "TLT", "GLD", "IWM") and ckpt.spec.n_actions == 22


def test_trainer_rejects_an_episode_length_that_breaks_the_sequence_rule(tmp_path):
    """Built from Python (not through the config check), 48 is neither a multiple nor a divisor of 32."""
    from rl_strategy.env import MarketEnv, prepare_training_market
    from rl_strategy.regimes import build_regime_table
    from training.ppo import PPOTrainer

    s = _settings({"source": "synthetic"}, tmp_path)
    data = load_training_data(s)
    env = MarketEnv(prepare_training_market(data, "next_open"), build_regime_table(tuple(data.tickers)), n_envs=8,
                    episode_length=48)
    with pytest.raises(RLTraderError, match="episode length 48 must be a multiple or a divisor of n_steps 32"):
        PPOTrainer(env, GRUPolicy(), dataclasses.replace(s.ppo, n_steps=32), 1000, seed=0)


def test_a_cache_path_trains_and_tests_only_on_its_periods(tmp_path):
    """A 2015-2024 tensor cache (the README's example) must not put the test years into training,
    and a backtest from it uses --start/--end."""
    from backtests.evaluate import load_backtest_data
    from rl_strategy.data import load_market, save_panel_cache
    from rl_strategy.features import WARMUP

    whole = load_market(["SPY", "QQQ", "IWM"], "2015-01-01", "2024-12-31", history_days=WARMUP)
    cache = save_panel_cache(whole, tmp_path / "panel.pt")
    s = _settings({"source": "synthetic"}, tmp_path)
    s.data.cache_path = str(cache)
    train = load_training_data(s)
    assert str(train.period_start.date()) == "2015-01-01" and str(train.panel.index[-1].date()) == "2019-12-31"
    assert train.history_rows() == WARMUP
    test = load_backtest_data(s, ("SPY", "QQQ", "IWM"), "2021-01-01", "2021-12-31")
    assert str(test.period_start.date()) == "2021-01-01" and str(test.panel.index[-1].date()) == "2021-12-31"
    s.periods.train_end = "2025-06-30"  # beyond the cache: refused, not silently shortened
    with pytest.raises(RLTraderError, match="the panel covers"):
        load_training_data(s)
