"""Shared fixtures. Real prices are read from ../shared/data/market beside the repository;
under CI=true a missing folder is a failure, not a skip. Tests of accounting, look-ahead,
determinism and resume run on the embedded synthetic market too (the `source` fixture), so a
contributor without ../shared keeps every parity check."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

MARKET_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "market"


@pytest.fixture(scope="session")
def market_dir() -> Path:
    if not (MARKET_DIR / "SPY.csv").is_file():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"real market data missing at {MARKET_DIR} (required under CI)")
        pytest.skip(f"real market data not found at {MARKET_DIR}")
    return MARKET_DIR


@pytest.fixture(scope="session", params=["synthetic", "real"])
def source(request) -> dict:
    """`load_market` keyword arguments of a data source: the synthetic market, or the real CSVs."""
    if request.param == "synthetic":
        return {"source": "synthetic"}
    return {"source": "csv", "csv_dir": str(request.getfixturevalue("market_dir"))}


@pytest.fixture(scope="session")
def source_args(source) -> list[str]:
    """The same source as `rltrader` options."""
    return ["--data-source", source["source"]] + (["--csv-dir", source["csv_dir"]] if "csv_dir" in source else [])


@pytest.fixture(scope="session")
def tiny_checkpoints(source, tmp_path_factory) -> list[Path]:
    """Two small checkpoints trained on 2015-2019 data of `source` (seconds on CPU)."""
    from training.config import load_settings
    from training.train import build_session, run_training

    paths = []
    for seed in (1, 2):
        out = tmp_path_factory.mktemp(f"ck{seed}")
        settings = load_settings(None, {"data.source": source["source"], "data.csv_dir": source.get("csv_dir"), "ppo.n_envs": 64,
                                        "ppo.n_steps": 32, "ppo.minibatches": 4, "env.episode_length": 64,
                                        "run.timesteps": 64 * 32 * 2, "run.device": "cpu", "run.seed": seed,
                                        "run.out": str(out)})
        paths.append(run_training(build_session(settings)).final_checkpoint)
    return paths
