"""The v2 GRU actor-critic: Linear(64,128)+ReLU+LayerNorm -> GRU(128) -> policy(16) + value(1).

One recurrent trunk is shared by actor and critic. The same module serves the rollout (one
step at a time, `step`) and the PPO update (whole sequences through the fused `nn.GRU`,
`sequence`), and later inference in the vectorbt strategy. 109,841 parameters for the v2
shape (64 inputs, 16 actions).

`EnsemblePolicy` averages several trained networks' action probabilities behind the same
inference interface (a seed ensemble checkpoint loads as one).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from rl_strategy.errors import RLTraderError
from rl_strategy.risk import MASKED_LOGIT


class GRUPolicy(nn.Module):
    """`action_mask` (n_actions bools, from `rl_strategy.risk.policy_mask`): masked actions get the logit
    -1e9 in every call (rollout, update, replay), and the mask is a buffer saved with the weights. None
    (no risk limits) registers nothing, so the v2 network and its state dict are unchanged."""

    def __init__(self, obs_dim: int = 64, n_actions: int = 16, hidden: int = 128,
                 action_mask: torch.Tensor | None = None) -> None:
        super().__init__()
        self.obs_dim, self.n_actions, self.hidden = obs_dim, n_actions, hidden
        if action_mask is not None:
            action_mask = torch.as_tensor(action_mask, dtype=torch.bool)
            if action_mask.shape != (n_actions,):
                raise RLTraderError(f"action_mask needs {n_actions} entries, got {tuple(action_mask.shape)}")
        self.register_buffer("action_mask", action_mask)
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
        return self._logits(out), self.value_head(out).squeeze(-1), state

    def sequence(self, obs: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Whole sequences that start at `state` with no reset inside: obs (S, N, obs_dim) ->
        logits (S, N, A), values (S, N). The trainer cuts sequences at episode starts."""
        out, _ = self.gru(self.encoder(obs), state)
        return self._logits(out), self.value_head(out).squeeze(-1)

    def _logits(self, out: torch.Tensor) -> torch.Tensor:
        logits = self.policy_head(out)
        return logits if self.action_mask is None else logits.masked_fill(~self.action_mask, MASKED_LOGIT)


class EnsemblePolicy(nn.Module):
    """Several trained policies acting as one (rule "mean_probs"): the action distribution is the
    mean of the members' softmax probabilities, the value the mean of their values.

    It has `GRUPolicy`'s inference interface, so replay and `RLPolicy` use it unchanged: the
    state is the members' states stacked (M, 1, B, H), and the logits are the log of the mean
    probabilities (log-sum-exp of the members' log-probabilities, finite where a probability
    underflows), so argmax and inverse-CDF sampling act on the mean probabilities.
    """

    def __init__(self, members: list[GRUPolicy]) -> None:
        super().__init__()
        shapes = {(m.obs_dim, m.n_actions, m.hidden) for m in members}
        if len(shapes) != 1:
            raise RLTraderError(f"ensemble members need one (obs_dim, n_actions, hidden), got {sorted(shapes)}")
        self.members = nn.ModuleList(members)
        self.obs_dim, self.n_actions, self.hidden = shapes.pop()

    def initial_state(self, batch: int, device: torch.device | str = "cpu") -> torch.Tensor:
        return torch.stack([m.initial_state(batch, device) for m in self.members])

    def step(self, obs: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One decision for a batch: obs (B, obs_dim), state (M, 1, B, H) -> log mean probabilities, mean value, state."""
        outs = [m.step(obs, s) for m, s in zip(self.members, state, strict=True)]
        logp = torch.stack([torch.log_softmax(logits, -1) for logits, _, _ in outs])
        logits = torch.logsumexp(logp, 0) - math.log(len(outs))
        return logits, torch.stack([v for _, v, _ in outs]).mean(0), torch.stack([s for _, _, s in outs])
