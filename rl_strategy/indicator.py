"""`RLAllocation`: the policy as a vectorbt indicator, for parameter sweeps in research code.

    from rl_strategy.indicator import RLAllocation
    res = RLAllocation.run(close, open_, checkpoint=["a.pt", "b.pt"])
    pf = simulate_portfolio(res.weights, open_, close)   # one group per checkpoint

`res.weights` has columns (rl_checkpoint, asset): one block of target weights per checkpoint
(NaN rows = HOLD), ready for `from_orders(..., group_by=...)`. Extra keyword arguments
(`execution`, `fees`, `slippage`, `sample`, `seed`) go to `RLPolicy.run`. The class is built on
first use so that importing this module does not import vectorbt.
"""

from __future__ import annotations

from functools import lru_cache

import pandas as pd


def _apply(close: pd.DataFrame, open_: pd.DataFrame, checkpoint: str, **kwargs):
    from rl_strategy.strategy import RLPolicy

    weights = RLPolicy.load(checkpoint).target_weights(close, open_, **kwargs)
    return weights.reindex(columns=close.columns).to_numpy()  # label by the caller's column order


@lru_cache(maxsize=1)
def _build():
    import vectorbt as vbt

    factory = vbt.IndicatorFactory(class_name="RLAllocation", short_name="rl", input_names=["close", "open"],
                                   param_names=["checkpoint"], output_names=["weights"])
    return factory.from_apply_func(_apply, keep_pd=True, param_settings={"checkpoint": {"is_array_like": False}})


def __getattr__(name: str):
    if name == "RLAllocation":
        return _build()
    raise AttributeError(name)
