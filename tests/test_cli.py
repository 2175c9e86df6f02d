"""The command line: fast --help, one-line errors with exit code 1, data fetch, quickstart end to end."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from typer.testing import CliRunner

from rltrader.cli import app

RUN = [sys.executable, "-c", "import sys; from rltrader.cli import main; sys.argv[0] = 'rltrader'; main()"]


def test_help_is_fast_and_lists_commands():
    start = time.perf_counter()
    out = subprocess.run(RUN + ["--help"], capture_output=True, text=True, check=True)
    assert time.perf_counter() - start < 3.0  # well under a second on a dev machine; no torch/vectorbt import
    for command in ("train", "backtest", "report", "data", "bench", "quickstart"):
        assert command in out.stdout
    for sub in (["train", "--help"], ["backtest", "--help"], ["data", "fetch", "--help"], ["bench", "train", "--help"]):
        assert "--" in subprocess.run(RUN + sub, capture_output=True, text=True, check=True).stdout


def test_errors_are_one_line_with_exit_code_1(tmp_path):
    (tmp_path / "csv").mkdir()
    (tmp_path / "csv" / "SPY.csv").write_text("Date,Open,High,Low,Close,Volume\n2020-01-02,1,1,1,1,0\n")
    cases = [
        ["data", "fetch", "--tickers", "SPY,NOPE", "--csv-dir", str(tmp_path / "csv")],  # --csv-dir implies csv
        ["data", "fetch", "--start", "2020-01-01", "--end", "2019-01-01"],
        ["backtest", "--model", str(tmp_path / "missing_*.pt")],
        ["train", "--config", str(tmp_path / "nope.yaml")],
    ]
    (tmp_path / "bad.yaml").write_text("ppo:\n  lr: 0.1\n")
    cases.append(["train", "--config", str(tmp_path / "bad.yaml")])
    for args in cases:
        res = subprocess.run(RUN + args, capture_output=True, text=True, cwd=tmp_path)
        assert res.returncode == 1, (args, res.stderr)
        lines = [x for x in res.stderr.splitlines() if x.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), (args, res.stderr)
        assert "Traceback" not in res.stderr
    res = subprocess.run(RUN + ["train", "--config", str(tmp_path / "bad.yaml")], capture_output=True, text=True)
    assert "unknown key ppo.lr" in res.stderr


def test_data_fetch_summary_and_cache(market_dir, tmp_path):
    res = CliRunner().invoke(app, ["data", "fetch", "--source", "csv", "--csv-dir", str(market_dir), "--start",
                                   "2015-01-01", "--end", "2019-12-31", "--cache-out", str(tmp_path / "p.pt")])
    assert res.exit_code == 0, res.output
    assert "1258 trading days" in res.output and "2019-12-31" in res.output
    assert "fingerprint " in res.output and (tmp_path / "p.pt").is_file()


def test_quickstart_end_to_end_and_report_rebuild(tmp_path):
    out = tmp_path / "qs"
    res = CliRunner().invoke(app, ["quickstart", "--out", str(out), "--timesteps", "16384", "--n-envs", "256",
                                   "--device", "cpu"])
    assert res.exit_code == 0, res.output
    for name in ("eval.json", "eval.returns.csv", "tearsheet.html", "comparison.html"):
        assert (out / name).is_file()
    report = json.loads((out / "eval.json").read_text())
    assert report["data"]["source"] == "synthetic" and len(report["policies"]) == 8
    page = (out / "comparison.html").read_text()
    assert all(p["name"] in page for p in report["policies"])
    # Rebuilding from the saved JSON gives the same page (same figures), without the policy.
    before = page
    res = CliRunner().invoke(app, ["report", "--input", str(out / "eval.json"), "--comparison",
                                   str(tmp_path / "again.html"), "--html", str(tmp_path / "again_tear.html")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "again.html").read_text() == before


def test_train_with_validation_and_seeds_writes_members_and_an_ensemble(tmp_path):
    """`--val-start/--val-end` and `--seeds` from the command line: each seed keeps its best
    validation checkpoint, and the ensemble of them backtests like one checkpoint."""
    out = tmp_path / "ens"
    res = CliRunner().invoke(app, ["train", "--timesteps", "2048", "--n-envs", "64", "--device", "cpu", "--quiet",
                                   "--val-start", "2019-01-01", "--val-end", "2019-12-31", "--eval-every", "1",
                                   "--seeds", "1,2", "--out", str(out)])
    assert res.exit_code == 0, res.output
    for k in (1, 2):
        assert len(list((out / f"seed_{k}").glob("model_best_*.pt"))) == 1
    ensemble = list(out.glob("model_ensemble_*.pt"))
    assert len(ensemble) == 1
    from rl_strategy.strategy import RLPolicy

    policy = RLPolicy.load(ensemble[0])
    assert policy.checkpoint.is_ensemble and len(policy.checkpoint.members) == 2
    assert all(m.path.name.startswith("model_best_") for m in policy.checkpoint.members)
