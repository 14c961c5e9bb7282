"""The garbage collector's settings for a long-running process: `liaison-server run` (through
`serve.tune_gc`), the benchmarks' servers that mirror it, and the test processes. No import but
`gc`: a benchmark's minimal app takes them without loading the service."""

from __future__ import annotations

import gc


def collect_less() -> None:
    """Everything loaded so far (modules, an app's routes and schemas: most of the heap) lives
    as long as the process, so it is frozen out of the collector's scans; and the youngest
    generation is collected every 10,000 allocations instead of 700, since a request's
    objects are almost all freed by reference counting when it ends."""
    gc.freeze()
    gc.set_threshold(10_000, 20, 50)
