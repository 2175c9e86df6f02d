"""Where the walk-forward's training tasks run: a local process pool or a Ray cluster.

Both backends call the same top-level task function with the same plain-data job (a dict of
keyword arguments), through `run_job`, which sets torch's thread count for the task: so a task
gives the same result in either backend and in the calling process. A job that raises is run once
more (`RETRIES`; the local pool is replaced when a crashed worker broke it);
a job that fails again is returned as a failure with its one-line error, never dropped.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

from rl_strategy.atomic import atomic_write_bytes
from rl_strategy.errors import RLTraderError

BACKENDS = ("local", "ray")
#: A failed job is run this many more times before it is reported as failed.
RETRIES = 1
RAY_MISSING = 'the ray backend needs ray: pip install -e ".[ray]"'

Task = Callable[..., dict]
Job = dict
#: Called in the main process with each finished job and its result.
OnDone = Callable[[Job, dict], None]


@dataclass(frozen=True)
class BackendOptions:
    """How tasks run: `rltrader walkforward --backend/--workers/--cpus-per-task/--ray-address`."""

    backend: str = "local"
    workers: int | None = None       # parallel tasks (default: CPU count // cpus_per_task, at least 1)
    cpus_per_task: int = 1           # torch threads per task (and Ray's num_cpus per task)
    ray_address: str | None = None   # an existing Ray cluster; None starts a local instance for the run

    def check(self) -> BackendOptions:
        if self.backend not in BACKENDS:
            raise RLTraderError(f"--backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.cpus_per_task < 1 or (self.workers is not None and self.workers < 1):
            raise RLTraderError("--workers and --cpus-per-task must be >= 1")
        if self.backend == "ray" and importlib.util.find_spec("ray") is None:
            raise RLTraderError(RAY_MISSING)
        return self

    @property
    def n_workers(self) -> int:
        return self.workers or max(1, (os.cpu_count() or 1) // self.cpus_per_task)


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch's intra-op threads set to `n` for the block, restored after (a task run in the main
    process leaves it as it was)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_job(task: Task, job: Job, cpus_per_task: int) -> dict:
    """One task with its thread budget: what every backend runs in its workers."""
    with torch_threads(cpus_per_task):
        return task(**job)


def error_line(exc: BaseException) -> str:
    """A task's failure as one line (Ray wraps the task's exception: its cause is shown)."""
    exc = getattr(exc, "cause", None) or exc
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def run_tasks(task: Task, jobs: list[Job], options: BackendOptions, on_done: OnDone | None = None
              ) -> tuple[list[dict], list[tuple[Job, str]]]:
    """Run every job (retrying failures once); the results in completion order and the failures
    as (job, error line)."""
    options.check()
    results: list[dict] = []
    if not jobs:  # nothing to run: no pool, no Ray instance
        return results, []

    def done(job: Job, result: dict) -> None:
        results.append(result)
        if on_done is not None:
            on_done(job, result)

    pending: list[tuple[Job, str]] = [(job, "") for job in jobs]
    with _backend(options, len(jobs)) as run_round:
        for _ in range(1 + RETRIES):
            if not pending:
                break
            pending = run_round(task, [job for job, _ in pending], done)
    return results, pending


RunRound = Callable[[Task, list[Job], OnDone], list[tuple[Job, str]]]


@contextmanager
def _backend(options: BackendOptions, n_jobs: int) -> Iterator[RunRound]:
    if options.backend == "ray":
        with _ray_session(options) as ray:
            yield lambda task, jobs, done: _ray_round(ray, task, jobs, done, options)
        return
    pool: list[ProcessPoolExecutor] = []  # one spawn pool for every round, replaced if a worker died
    try:
        yield lambda task, jobs, done: _local_round(pool, task, jobs, done, options, n_jobs)
    finally:
        for p in pool:
            p.shutdown()


def _local_round(pool: list[ProcessPoolExecutor], task: Task, jobs: list[Job], done: OnDone, options: BackendOptions,
                 n_jobs: int) -> list[tuple[Job, str]]:
    """One pass over `jobs` in the spawn pool (no fork: torch and its threads do not survive one)."""
    if not pool:
        pool.append(ProcessPoolExecutor(max_workers=min(options.n_workers, n_jobs), mp_context=get_context("spawn")))
    futures = {pool[0].submit(run_job, task, job, options.cpus_per_task): i for i, job in enumerate(jobs)}
    failed = []
    for future in as_completed(futures):
        job = jobs[futures[future]]
        try:
            result = future.result()
        except Exception as exc:  # a task's failure is reported, whatever it is
            failed.append((job, error_line(exc)))
            continue
        done(job, result)
    if any(isinstance(f.exception(), BrokenProcessPool) for f in futures):  # a dead worker breaks the whole pool
        pool.pop().shutdown()
    return failed


@contextmanager
def _ray_session(options: BackendOptions):
    """Connect to `--ray-address`, or start a local instance for the run (shut down after)."""
    try:
        import ray
    except ImportError:
        raise RLTraderError(RAY_MISSING) from None
    if ray.is_initialized():
        yield ray
        return
    if options.ray_address:
        ray.init(address=options.ray_address, logging_level="ERROR")
    else:
        ray.init(num_cpus=options.n_workers * options.cpus_per_task, include_dashboard=False, logging_level="ERROR")
    try:
        yield ray
    finally:
        ray.shutdown()


def _ray_job(task: Task, job: Job, cpus_per_task: int) -> tuple[dict, dict[str, bytes]]:
    """A Ray task: the job, then the files it lists (`result["files"]`, paths relative to `job["out"]`)
    read back, so a worker on another machine hands its checkpoints to the driver's --out."""
    result = run_job(task, job, cpus_per_task)
    root = Path(job["out"])
    return result, {name: (root / name).read_bytes() for name in result.get("files", [])}


def _ray_round(ray, task: Task, jobs: list[Job], done: OnDone, options: BackendOptions) -> list[tuple[Job, str]]:
    remote = ray.remote(num_cpus=options.cpus_per_task, max_retries=0)(_ray_job)
    refs = {remote.remote(task, job, options.cpus_per_task): job for job in jobs}
    failed = []
    waiting = list(refs)
    while waiting:
        ready, waiting = ray.wait(waiting, num_returns=1)
        job = refs[ready[0]]
        try:
            result, files = ray.get(ready[0])
        except Exception as exc:  # reported with the job, retried by run_tasks
            failed.append((job, error_line(exc)))
            continue
        root = Path(job["out"])
        for name, data in sorted(files.items(), key=lambda kv: kv[0].endswith("result.json")):  # the marker last
            if not (root / name).is_file():
                atomic_write_bytes(root / name, lambda fh, data=data: fh.write(data))
        done(job, result)
    return failed
