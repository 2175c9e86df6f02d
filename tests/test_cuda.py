"""CUDA checks, run where a GPU is present (skipped elsewhere): same accounting as on CPU, no
host-device sync inside a rollout, checkpoints portable between devices."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rl_strategy.checkpoint import load_checkpoint
from rl_strategy.data import load_market
from rl_strategy.env import MarketEnv, prepare_training_market
from rl_strategy.features import WARMUP
from rl_strategy.regimes import build_regime_table
from training.config import load_settings
from training.train import build_session, run_training

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
TICKERS = ["SPY", "QQQ", "IWM"]


@pytest.fixture(scope="module")
def market():
    data = load_market(TICKERS, "2015-01-01", "2019-12-31", source="synthetic", history_days=WARMUP)
    return prepare_training_market(data, "next_open")


def _equity(market, device, dtype, actions, starts):
    table = build_regime_table(tuple(TICKERS))
    env = MarketEnv(market, table, n_envs=actions.shape[1], episode_length=actions.shape[0], fees=0.001,
                    slippage=0.0005, device=device, dtype=dtype)
    env.reset(starts.to(device))
    values = []
    for k in range(actions.shape[0]):
        _, _, _, _, info = env.step(actions[k].to(device))
        values.append((info["final_value"] if k == actions.shape[0] - 1 else env.value).double().cpu())
    return torch.stack(values)


def test_cuda_env_matches_cpu(market):
    g = torch.Generator().manual_seed(0)
    actions = torch.randint(0, 16, (300, 64), generator=g)
    starts = torch.randint(market.first_decision, market.last_decision - 300, (64,), generator=g)
    cpu64 = _equity(market, "cpu", torch.float64, actions, starts)
    cuda64 = _equity(market, "cuda", torch.float64, actions, starts)
    cuda32 = _equity(market, "cuda", torch.float32, actions, starts)
    assert torch.max(torch.abs(cuda64 / cpu64 - 1)) <= 1e-12
    assert torch.max(torch.abs(cuda32 / cpu64 - 1)) <= 1e-5


def test_rollout_has_no_host_sync(tmp_path):
    s = load_settings(None, {"ppo.n_envs": 1024, "run.device": "cuda", "run.out": str(tmp_path)})
    trainer = build_session(s).trainer
    trainer.collect()  # warm-up (allocations, cuBLAS handles)
    torch.cuda.set_sync_debug_mode("error")
    try:
        trainer.collect()
    finally:
        torch.cuda.set_sync_debug_mode(0)


def test_cuda_training_checkpoint_loads_on_cpu(tmp_path):
    s = load_settings(None, {"ppo.n_envs": 4096, "run.timesteps": 4096 * 32 * 2, "run.device": "cuda",
                             "run.out": str(tmp_path)})
    result = run_training(build_session(s))
    assert np.isfinite([h["loss"] for h in result.history]).all()
    ckpt = load_checkpoint(result.final_checkpoint, map_location="cpu")
    from rl_strategy.strategy import RLPolicy

    data = load_market(TICKERS, "2020-01-01", "2020-12-31", source="synthetic", history_days=WARMUP)
    run = RLPolicy(ckpt).run(data.close, data.open)
    assert run.weights.shape == data.close.shape and run.equity.iloc[-1] > 0
