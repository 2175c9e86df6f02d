"""Numba reference kernel: vectorbt's target-weight rebalancing, re-implemented without vectorbt.

It is the independent check of the torch environment and a fast scorer of many weight paths.
It follows the recurrence in docs/cost-accounting.md and, beyond it, the few numerical
details of vectorbt 1.2.0 that only show at the 1e-12 level, so that its equity equals
`simulate_portfolio(...).value()` to rounding (read from vectorbt/portfolio/nb.py):

* Orders run in ascending approximate order value `w_j * V - units_j * price_j` (insertion
  argsort: ties keep column order, NaN-weight columns go last), so sells come first.
* Orders are sized in units: `w_j * V / price_j - units_j`; a buy costs
  `units * price * (1 + s)` plus `fees` on that, a sell returns `units * price * (1 - s)` less fees.
* A buy whose cost is within 1e-9 (relative) of the cash left fills in full; otherwise it is cut
  to `cash / (1 + f)` of slipped notional and the cash becomes 0.
* Orders smaller than `MIN_SIZE` units (vectorbt's default `min_size`) are rejected, orders of
  |size| <= 1e-12 are ignored, and cash, units and sums within 1e-12 (absolute) or 1e-9
  (relative, for a difference) of zero snap to exactly zero, as in `vectorbt.utils.math_`.
* The equity reported is rebuilt the way `pf.value()` does it: cash from the per-row sum of each
  order's cash flow, plus units (from the order sizes) times the close.

Only long positions are possible (weights in [0, 1], row sums <= 1); prices must be finite and
positive. Importing this module is cheap; numba compiles on first call (cached on disk).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from rl_strategy.errors import RLTraderError
from rl_strategy.portfolio import WEIGHT_TOL, check_execution

MIN_SIZE = 1e-8  # vectorbt.settings.portfolio["min_size"]: smallest order, in units
REL_TOL = 1e-9  # vectorbt.utils.math_.rel_tol
ABS_TOL = 1e-12  # vectorbt.utils.math_.abs_tol


@njit(cache=True)
def _is_close(a: float, b: float) -> bool:
    """vectorbt's `is_close_nb`: equal within 1e-9 relative or 1e-12 absolute."""
    if np.isnan(a) or np.isnan(b) or np.isinf(a) or np.isinf(b):
        return False
    if a == b:
        return True
    return abs(a - b) <= max(REL_TOL * max(abs(a), abs(b)), ABS_TOL)


@njit(cache=True)
def _is_less(a: float, b: float) -> bool:
    """vectorbt's `is_less_nb`: clearly less, not merely close."""
    return (not _is_close(a, b)) and a < b


@njit(cache=True)
def _add(a: float, b: float) -> float:
    """vectorbt's `add_nb`: a sum that is zero up to tolerance becomes exactly zero."""
    if np.sign(a) != np.sign(b):
        zero = _is_close(abs(a), abs(b))
    else:
        zero = _is_close(a + b, 0.0)
    return 0.0 if zero else a + b


@njit(cache=True)
def _insert_argsort(values: np.ndarray, order: np.ndarray) -> None:
    """vectorbt's `insert_argsort_nb`, in place: stable ascending sort, NaN moved to the end."""
    for j in range(1, len(values)):
        v, o = values[j], order[j]
        i = j - 1
        while i >= 0 and (values[i] > v or np.isnan(values[i])):
            values[i + 1] = values[i]
            order[i + 1] = order[i]
            i -= 1
        values[i + 1] = v
        order[i + 1] = o


@njit(cache=True)
def _target_percent_order(cash: float, units: float, value: float, price: float, weight: float,
                          fees: float, slippage: float) -> tuple[float, float, float, float]:
    """One `targetpercent` order as vectorbt's `execute_order_nb` + `buy_nb`/`sell_nb` run it.

    Returns (cash, units, filled units (signed, 0 when nothing filled), cash flow). The asset is
    valued at the order price (vectorbt's default `val_price=inf`). Cash and units snap to zero
    first even when no order is placed, as vectorbt does for every cell of every row.
    """
    if _is_close(cash, 0.0):
        cash = 0.0
    if _is_close(units, 0.0):
        units = 0.0
    if np.isnan(weight) or np.isnan(price):
        return cash, units, 0.0, 0.0
    if _is_close(value, 0.0):
        value = 0.0
    if np.isnan(value) or value <= 0.0:
        return cash, units, 0.0, 0.0
    size = weight * value / price - units  # target units minus held units
    if size > 0.0:
        if cash == 0.0:
            return cash, units, 0.0, 0.0
        adj_price = price * (1.0 + slippage)
        req_cash = size * adj_price
        req_fees = req_cash * fees
        total = req_cash + req_fees
        if _is_close(total, cash) or total < cash:
            filled, fees_paid, spent = size, req_fees, total
        else:  # not enough cash: spend all of it, fees included
            max_req_cash = cash / (1.0 + fees)
            if max_req_cash <= 0.0:
                return cash, units, 0.0, 0.0
            filled, fees_paid, spent = max_req_cash / adj_price, cash - max_req_cash, cash
        if _is_close(size, 0.0) or _is_less(filled, MIN_SIZE):
            return cash, units, 0.0, 0.0
        return _add(cash, -spent), _add(units, filled), filled, -filled * adj_price - fees_paid
    sold = -size
    if _is_close(sold, 0.0) or _is_less(sold, MIN_SIZE):
        return cash, units, 0.0, 0.0
    adj_price = price * (1.0 - slippage)
    gross = sold * adj_price
    fees_paid = gross * fees
    proceeds = _add(gross, -fees_paid)
    if proceeds < 0.0:
        return cash, units, 0.0, 0.0
    return cash + proceeds, _add(units, -sold), -sold, gross - fees_paid


@njit(cache=True)
def simulate_weights_nb(trade_price: np.ndarray, close: np.ndarray, weights: np.ndarray, fees: float,
                        slippage: float, init_cash: float) -> np.ndarray:
    """Equity (S, T) at each close for S weight paths (S, T, n) over one price history (T, n).

    Row t's weights fill at `trade_price[t]` (already aligned: for next-open execution pass
    shifted weights and the open). NaN weight = no order for that asset; all-NaN row = no order.
    Each scenario starts from `init_cash` in cash, holds no short and borrows nothing.
    """
    n_scen, n_rows, n_assets = weights.shape
    equity = np.empty((n_scen, n_rows), dtype=np.float64)
    units = np.zeros(n_assets)  # simulation state, as vectorbt's last_position
    ledger_units = np.zeros(n_assets)  # units rebuilt from the order sizes, as pf.assets()
    val_price = np.full(n_assets, np.nan)
    order_value = np.empty(n_assets)
    call_seq = np.empty(n_assets, dtype=np.int64)
    unit_flow = np.empty(n_assets)
    cash_flow = np.empty(n_assets)
    for s in range(n_scen):
        cash = init_cash
        ledger_cash = init_cash  # as pf.cash(): init_cash plus the summed cash flows
        units[:] = 0.0
        ledger_units[:] = 0.0
        val_price[:] = np.nan
        for t in range(n_rows):
            w = weights[s, t]
            for j in range(n_assets):
                if not np.isnan(trade_price[t, j]):
                    val_price[j] = trade_price[t, j]  # last known price values the holding
            # Group value once, before any order, holdings at the trade price.
            value = cash
            for j in range(n_assets):
                if units[j] != 0.0:
                    value += units[j] * val_price[j]
            for j in range(n_assets):
                order_value[j] = w[j] * value - units[j] * val_price[j]
                call_seq[j] = j
            _insert_argsort(order_value, call_seq)  # sells first, then buys small to large
            unit_flow[:] = 0.0
            cash_flow[:] = 0.0
            for k in range(n_assets):
                j = call_seq[k]
                cash, units[j], unit_flow[j], cash_flow[j] = _target_percent_order(
                    cash, units[j], value, trade_price[t, j], w[j], fees, slippage)
            # Equity at the close, rebuilt from the orders as pf.value() does.
            row_flow = 0.0
            for j in range(n_assets):
                row_flow += _add(0.0, cash_flow[j])
            ledger_cash = _add(ledger_cash, row_flow)
            asset_value = 0.0
            for j in range(n_assets):
                ledger_units[j] = _add(ledger_units[j], _add(0.0, unit_flow[j]))
                if ledger_units[j] != 0.0:
                    asset_value += close[t, j] * ledger_units[j]
            equity[s, t] = ledger_cash + asset_value
    return equity


def simulate_weights(open_: np.ndarray, close: np.ndarray, weights: np.ndarray, *, fees: float = 0.001,
                     slippage: float = 0.0, execution: str = "next_open", init_cash: float = 1.0) -> np.ndarray:
    """Equity of decision weights, (T, n) -> (T,) or (S, T, n) -> (S, T).

    Row t of `weights` is the decision at day t's close. `execution="close"` fills it at that
    close; `"next_open"` fills it at day t+1's open (the first row places no order; the last
    decision is never filled).
    """
    check_execution(execution)
    close = np.ascontiguousarray(close, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    single = w.ndim == 2
    w = w[None] if single else w
    if close.ndim != 2 or w.ndim != 3 or w.shape[1:] != close.shape:
        raise RLTraderError(f"weights {np.shape(weights)} do not match prices {close.shape} (T, n)")
    if execution == "close":
        trade_price = close
    else:
        if open_ is None or np.shape(open_) != close.shape:
            raise RLTraderError(f"next_open execution needs open prices shaped like close {close.shape}")
        trade_price = np.ascontiguousarray(open_, dtype=np.float64)
        shifted = np.full_like(w, np.nan)
        shifted[:, 1:] = w[:, :-1]  # decision of day t fills at day t+1's open
        w = shifted
    in_range = np.isnan(w) | ((w >= -WEIGHT_TOL) & (w <= 1 + WEIGHT_TOL))  # as simulate_portfolio
    if not in_range.all() or np.nansum(w, axis=2).max(initial=0.0) > 1 + WEIGHT_TOL:
        raise RLTraderError("weights must be in [0, 1] with row sums <= 1 (long only, CASH = 1 - sum)")
    if not (np.isfinite(trade_price).all() and np.isfinite(close).all() and (close > 0).all()
            and (trade_price > 0).all()):
        raise RLTraderError("prices must be finite and positive")
    equity = simulate_weights_nb(trade_price, close, np.ascontiguousarray(w), float(fees), float(slippage),
                                 float(init_cash))
    return equity[0] if single else equity
