"""rl_strategy: the vectorbt plugin a researcher imports; training and backtests build on it.

data -> features -> env -> policy -> checkpoint -> strategy (vectorbt wrapper). It imports nothing
from the packages above it (training, backtests, reports, rltrader).

    from rl_strategy import RLPolicy, simulate_portfolio, load_market

Names are imported on first use, so `import rl_strategy` (and `rltrader --help`) stays instant.
"""

from importlib import import_module

_EXPORTS = {
    "RLPolicy": "rl_strategy.strategy",
    "simulate_portfolio": "rl_strategy.portfolio",
    "load_market": "rl_strategy.data",
    "MarketData": "rl_strategy.data",
    "build_regime_table": "rl_strategy.regimes",
    "load_checkpoint": "rl_strategy.checkpoint",
    "RLTraderError": "rl_strategy.errors",
}

__all__ = [*_EXPORTS, "RLAllocation"]


def __getattr__(name: str):
    if name == "RLAllocation":
        return import_module("rl_strategy.indicator").RLAllocation
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'rl_strategy' has no attribute {name!r}")
