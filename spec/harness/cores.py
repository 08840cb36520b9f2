"""How many torch threads each of several processes on this machine gets."""

from __future__ import annotations

import os


def threads_per_worker(workers: int) -> int:
    """The cores shared out: several torch processes, each with a thread per core, slow each other many times over."""
    return max(1, (os.cpu_count() or 1) // workers)
