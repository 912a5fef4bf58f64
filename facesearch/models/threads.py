"""CPU threads of the numpy models: their matrix products on the calling thread alone.

Describing already runs several threads side by side (photos prepared in parallel, the networks
beside them). A numpy matrix product large enough wakes BLAS's own thread pool, whose threads then
spin between products and take the CPU from every other stage: on 200 wild photos
(bench/describe_speed.py --stages) 87.8 CPU ms a face with the face parser's products on BLAS's 2
threads, 59.6 with them on one, 51.0 with the descriptor's region networks on one too.

    with one_blas_thread():
        y = x @ w
"""
from __future__ import annotations

from contextlib import AbstractContextManager
from functools import lru_cache


@lru_cache(maxsize=1)
def _controller():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def one_blas_thread() -> AbstractContextManager:
    """A context in which BLAS (numpy's matrix products) uses one thread, its own setting restored
    after (threadpoolctl; process-wide while inside, as BLAS's setting is)."""
    return _controller().limit(limits=1, user_api="blas")
