"""Shared fixtures. Real prices are read from ../shared/data/market beside the repository;
under CI=true a missing folder is a failure, not a skip."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

MARKET_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "market"


@pytest.fixture(scope="session")
def market_dir() -> Path:
    if not (MARKET_DIR / "SPY.csv").is_file():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"real market data missing at {MARKET_DIR} (required under CI)")
        pytest.skip(f"real market data not found at {MARKET_DIR}")
    return MARKET_DIR
