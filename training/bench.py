"""Throughput benchmarks behind `rltrader bench env|train`, so anyone can reproduce the figures."""

from __future__ import annotations

import platform
import time

import torch

from rl_strategy.env import prepare_training_market
from rl_strategy.regimes import build_regime_table
from rl_strategy.settings import Settings
from training.train import build_session, load_training_data, make_env


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def machine() -> dict:
    info = {"torch": torch.__version__, "python": platform.python_version(), "threads": torch.get_num_threads(),
            "cpu": platform.processor() or platform.machine()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def bench_env(settings: Settings, sizes: list[int], steps: int, device: str) -> list[dict]:
    """Environment steps per second with uniformly random actions (drawn ahead, on the device)."""
    data = load_training_data(settings)
    market = prepare_training_market(data, settings.env.execution, settings.env.features)
    regimes = build_regime_table(tuple(data.tickers), settings.regimes.families)
    rows = []
    for n_envs in sizes:
        env = make_env(settings, market, regimes, n_envs, device)
        gen = torch.Generator(device=env.device).manual_seed(0)
        actions = torch.randint(0, regimes.n_actions, (64, n_envs), generator=gen, device=env.device)
        for i in range(20):  # warm-up (allocator, caches, CUDA context)
            env.step(actions[i % 64])
        _sync(env.device)
        start = time.perf_counter()
        for i in range(steps):
            env.step(actions[i % 64])
        _sync(env.device)
        seconds = time.perf_counter() - start
        rows.append({"n_envs": n_envs, "steps": steps, "seconds": seconds,
                     "env_steps_per_second": n_envs * steps / seconds})
    return rows


def bench_train(settings: Settings, updates: int) -> dict:
    """End-to-end PPO timesteps per second (rollout + update) after one warm-up update."""
    session = build_session(settings)
    tr = session.trainer
    tr.train_one_update()  # warm-up
    _sync(session.env.device)
    start = time.perf_counter()
    rollout = update = 0.0
    for _ in range(updates):
        stats = tr.train_one_update()
        rollout += stats["rollout_seconds"]
        update += stats["update_seconds"]
    _sync(session.env.device)
    seconds = time.perf_counter() - start
    steps = updates * tr.batch
    return {"n_envs": settings.ppo.n_envs, "n_steps": settings.ppo.n_steps, "epochs": settings.ppo.epochs,
            "minibatches": settings.ppo.minibatches, "updates": updates, "timesteps": steps,
            "seconds": seconds, "timesteps_per_second": steps / seconds,
            "rollout_share": rollout / (rollout + update), "device": session.device}
