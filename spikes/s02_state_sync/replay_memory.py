"""Peak memory of one trace replay, measured in a fresh process (run by the trace-replay scenario).

pycrdt keeps its documents in Rust, outside Python's allocator, so the
replay's memory is the growth of this process's RSS, sampled with psutil
from before the replay to its end.
"""

from __future__ import annotations

import gc
import json
import os

from harness.probes import ProcessSampler, rss_bytes
from spikes.s02_state_sync import traces

__all__ = ["main"]


def main(argv: list[str]) -> int:
    """``python -m spikes.s02_state_sync.replay_memory OPTION EDITS``: replay in this fresh process, print peak RSS growth as JSON."""
    option, edits = argv[0], int(argv[1])
    trace = traces.load("automerge-paper")
    seq = traces.patches(trace, edits or None)
    gc.collect()
    base = rss_bytes(os.getpid(), include_children=False)
    with ProcessSampler(os.getpid(), hz=50, include_children=False) as sampler:
        r = traces.replay(option, seq, trace["startContent"])
        sampler.sample()
    print(json.dumps({"option": option, "edits": len(seq), "rss_growth_bytes": max(0, sampler.peak_rss() - base), "seconds": r.seconds}))
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
