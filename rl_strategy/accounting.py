"""The rebalancing recurrence, batched and branch-free in torch.

This is the single implementation of the cost accounting used by the training environment
and by the strategy when it replays a policy. It follows `docs/cost-accounting.md`,
i.e. what `vbt.Portfolio.from_orders(size_type="targetpercent", cash_sharing=True,
call_seq="auto")` does: value computed once before the orders, sells first, buys in
ascending order size, fees and slippage per order, cash clipped at zero (the last buy is
partly filled). The numba kernel in `rl_strategy.kernel` is the independent reference it is
tested against, together with vectorbt itself.
"""

from __future__ import annotations

import torch


def rebalance(holdings: torch.Tensor, cash: torch.Tensor, target: torch.Tensor,
              has_order: torch.Tensor, fees: float, slippage: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Trade every env of the batch to its target weights at the current (trade) price.

    holdings: (B, n) value of each asset at the trade price; cash: (B,);
    target: (B, n) target weights (CASH implied); has_order: (B, 1) float, 1 = trade, 0 = HOLD.
    Returns the new (holdings, cash). Envs without an order are left exactly unchanged.
    Row sums are fused matrix-vector products (`addmv`): on CPU ~3x faster than `sum(dim=1)` for n ~ 3.
    """
    ones = holdings.new_ones(holdings.shape[1])
    value = torch.addmv(cash, holdings, ones)
    delta = (target * value.unsqueeze(1) - holdings) * has_order
    # Sells first: they raise cash net of slippage and fees.
    sells = torch.clamp(delta, max=0.0)
    cash = torch.addmv(cash, sells, ones, alpha=-(1.0 - slippage) * (1.0 - fees))
    holdings = holdings + sells
    # Buys in ascending size, ties in column order like vectorbt's (stable) insertion sort; each
    # pays up to the cash left, so the last one may be partly filled. Exact ties are common (all
    # cash into EQ_WEIGHT): they are broken by adding a few ulps of the value per column index,
    # which keeps the stable order and lets the much cheaper unstable sort run (~35 vs ~65 us).
    buy_factor = (1.0 + slippage) * (1.0 + fees)
    tiebreak = torch.arange(holdings.shape[1], device=holdings.device, dtype=holdings.dtype)
    tiebreak *= 4.0 * torch.finfo(holdings.dtype).eps
    order_idx = torch.argsort(torch.addcmul(delta, value.unsqueeze(1), tiebreak), dim=1)
    ordered = delta.gather(1, order_idx)
    cost = torch.clamp(ordered, min=0.0) * buy_factor
    cost_before = torch.cumsum(cost, dim=1) - cost
    paid = torch.minimum(cost, torch.clamp(cash.unsqueeze(1) - cost_before, min=0.0))
    holdings = holdings.scatter_add(1, order_idx, paid / buy_factor)
    cash = torch.clamp(torch.addmv(cash, paid, ones, alpha=-1.0), min=0.0)  # exactly 0 after a partial fill
    return holdings, cash
