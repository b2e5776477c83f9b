"""Run independent tasks in worker processes (or in-process for one worker), with clean Ctrl-C handling."""
from __future__ import annotations

import multiprocessing as mp
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
R = TypeVar("R")


@contextmanager
def task_results(fn: Callable[[T], R], tasks: list[T], workers: int, ordered: bool = True) -> Iterator[Iterable[R]]:
    """Yield an iterator of ``fn(task)`` results, computed by ``min(workers, len(tasks))`` processes.

    ``ordered=False`` yields results as they finish. On an exception (Ctrl-C, a failing task) the pool is
    terminated instead of waiting for the other workers' queues.
    """
    workers = max(1, min(workers, len(tasks)))
    if workers == 1:
        yield map(fn, tasks)
        return
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    pool = ctx.Pool(workers)
    try:
        yield (pool.imap if ordered else pool.imap_unordered)(fn, tasks)
    except BaseException:
        pool.terminate()
        pool.join()
        raise
    pool.close()
    pool.join()
