"""The v2 GRU actor-critic: Linear(64,128)+ReLU+LayerNorm -> GRU(128) -> policy(16) + value(1).

One recurrent trunk is shared by actor and critic. The same module serves the rollout (one
step at a time, `step`) and the PPO update (whole sequences through the fused `nn.GRU`,
`sequence`), and later inference in the vectorbt strategy. 109,841 parameters for the v2
shape (64 inputs, 16 actions).
"""

from __future__ import annotations

import math

import torch
from torch import nn


class GRUPolicy(nn.Module):
    def __init__(self, obs_dim: int = 64, n_actions: int = 16, hidden: int = 128) -> None:
        super().__init__()
        self.obs_dim, self.n_actions, self.hidden = obs_dim, n_actions, hidden
        self.encoder = nn.Sequential(nn.Linear(obs_dim, hidden), nn.ReLU(), nn.LayerNorm(hidden))
        self.gru = nn.GRU(hidden, hidden, num_layers=1)
        self.policy_head = nn.Linear(hidden, n_actions)
        self.value_head = nn.Linear(hidden, 1)
        self._init_weights()

    def _init_weights(self) -> None:
        """Orthogonal init as in the PPO checklist: sqrt(2) trunk, 0.01 policy, 1 value, zero biases."""
        nn.init.orthogonal_(self.encoder[0].weight, math.sqrt(2))
        nn.init.zeros_(self.encoder[0].bias)
        for name, param in self.gru.named_parameters():
            if "weight" in name:
                nn.init.orthogonal_(param, 1.0)
            else:
                nn.init.zeros_(param)
        nn.init.orthogonal_(self.policy_head.weight, 0.01)
        nn.init.zeros_(self.policy_head.bias)
        nn.init.orthogonal_(self.value_head.weight, 1.0)
        nn.init.zeros_(self.value_head.bias)

    def initial_state(self, batch: int, device: torch.device | str = "cpu") -> torch.Tensor:
        return torch.zeros(1, batch, self.hidden, device=device)

    def step(self, obs: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One decision for a batch: obs (B, obs_dim), state (1, B, H) -> logits, value (B,), state."""
        out, state = self.gru(self.encoder(obs).unsqueeze(0), state)
        out = out.squeeze(0)
        return self.policy_head(out), self.value_head(out).squeeze(-1), state

    def sequence(self, obs: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Whole sequences that start at `state` with no reset inside: obs (S, N, obs_dim) ->
        logits (S, N, A), values (S, N). The trainer cuts sequences at episode starts."""
        out, _ = self.gru(self.encoder(obs), state)
        return self.policy_head(out), self.value_head(out).squeeze(-1)
