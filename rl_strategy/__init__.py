"""rl_strategy: the pieces shared by training and backtesting.

data -> features -> (env, in `training`) -> policy -> checkpoint -> strategy (vectorbt wrapper).
"""
