"""Fuzz a live stack: N mutated frames of every protocol while transfers run.

    python scripts/fuzz.py [--frames 1000000] [--seed 1]

Prints the report (frames accounted for, drops by reason, transfers intact);
exits 1 if any frame went unaccounted, any exception escaped or a transfer
was damaged."""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from netstack.testing.fuzz import fuzz  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--transfer-bytes", type=int, default=2_000_000)
    a = ap.parse_args()
    t0 = time.process_time()
    r = fuzz(frames=a.frames, seed=a.seed, transfer_bytes=a.transfer_bytes)
    for line in r.lines():
        print(line)
    print(f"CPU time: {time.process_time() - t0:.1f} s")
    return 0 if (r.unaccounted == 0 and r.internal_errors == 0 and r.transfers_intact) else 1


if __name__ == "__main__":
    sys.exit(main())
