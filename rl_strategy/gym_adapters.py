"""Gymnasium views of the market environment, for use with other RL libraries.

`MarketGymEnv` is one episode at a time (passes `gymnasium.utils.env_checker.check_env`);
`MarketVectorEnv` exposes the batched env as a `gymnasium.vector.VectorEnv` with same-step
autoreset (the final observation of a finished episode is in `info["final_obs"]`). Both wrap
`rl_strategy.env.MarketEnv`, so the accounting is the same as in training. gymnasium is an
optional dependency: `pip install -e ".[gym]"`.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv

from rl_strategy.env import MarketEnv, MarketTensors
from rl_strategy.features import CLIP  # every observation value lies in [-CLIP, CLIP]
from rl_strategy.regimes import RegimeTable


class MarketGymEnv(gym.Env):
    """A single episode of `episode_length` days starting at a random day of the panel."""

    metadata = {"render_modes": []}

    def __init__(self, market: MarketTensors, regimes: RegimeTable, **env_kwargs) -> None:
        self._kwargs = dict(env_kwargs, n_envs=1)
        self._env = MarketEnv(market, regimes, **self._kwargs)
        self.observation_space = spaces.Box(-CLIP, CLIP, shape=(self._env.obs_dim,), dtype=np.float32)
        self.action_space = spaces.Discrete(regimes.n_actions)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self._env.generator.manual_seed(seed)
        obs = self._env.reset()
        return obs[0].cpu().numpy().astype(np.float32), {"day": str(self._env.market.dates[int(self._env.day[0])].date())}

    def step(self, action):
        obs, reward, terminated, truncated, info = self._env.step(torch.tensor([int(action)], device=self._env.device))
        done = bool(truncated[0])
        if done:  # gymnasium: return the episode's last observation; the caller resets
            obs = info["final_obs"]
        return (obs[0].cpu().numpy().astype(np.float32), float(reward[0]), bool(terminated[0]), done,
                {"value": float(info["final_value"][0]) if done else float(self._env.value[0])})


class MarketVectorEnv(VectorEnv):
    """The batched environment with numpy in and out (one host transfer per step)."""

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(self, market: MarketTensors, regimes: RegimeTable, n_envs: int, **env_kwargs) -> None:
        self._env = MarketEnv(market, regimes, n_envs=n_envs, **env_kwargs)
        self.num_envs = n_envs
        self.single_observation_space = spaces.Box(-CLIP, CLIP, shape=(self._env.obs_dim,), dtype=np.float32)
        self.single_action_space = spaces.Discrete(regimes.n_actions)
        self.observation_space = spaces.Box(-CLIP, CLIP, shape=(n_envs, self._env.obs_dim), dtype=np.float32)
        self.action_space = spaces.MultiDiscrete(np.full(n_envs, regimes.n_actions))

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self._env.generator.manual_seed(seed)
        return self._env.reset().cpu().numpy().astype(np.float32), {}

    def step(self, actions):
        obs, reward, terminated, truncated, info = self._env.step(
            torch.as_tensor(np.asarray(actions), dtype=torch.long, device=self._env.device))
        out_info = {}
        if "final_obs" in info:
            out_info["final_obs"] = info["final_obs"].cpu().numpy().astype(np.float32)
        return (obs.cpu().numpy().astype(np.float32), reward.cpu().numpy().astype(np.float64),
                terminated.cpu().numpy(), truncated.cpu().numpy(), out_info)
