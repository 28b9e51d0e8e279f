"""Resume time of a resumable DataConnection across network changes (the NAT lab).

Runs the lab cases of tests/lab/test_resumption.py (root, ``ip``, wrtc
installed): B streams ~125 messages a second to A, for the aiortc, wrtc and
mixed pairs side by side, while B's link goes down for ``--outage`` seconds
(case 2) or B's address changes (case 1, ``--case 1``).  Prints, per pair,
the longest stall and the resume time: from connectivity back (the link up;
for an address change, the change itself) to the first message after it.

    python bench/resume.py [--case 1|2] [--outage 12]
"""

from __future__ import annotations

import argparse
import sys
import threading
import time

from tests.lab.netlab import Lab
from tests.lab.test_resumption import BEFORE, PAIRS, stream_across


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", type=int, choices=(1, 2), default=2)
    parser.add_argument("--outage", type=float, default=12.0)
    args = parser.parse_args()
    lab = Lab()
    lab.spawn("pub", [sys.executable, "-m", "peerpy_server.cli", "--host", "203.0.113.1",
                      "--port", "9000", "--log-level", "WARNING"])  # fmt: skip
    down: list[str] = []
    timer = threading.Timer(args.outage, lambda: [lab.ip(n, "link", "set", "eth0", "up")
                                                  for n in down])  # fmt: skip

    def change(namespace: str) -> None:
        if args.case == 1:
            n = int(namespace[-1])
            lab.ip(namespace, "addr", "add", f"203.0.113.{30 + n}/24", "dev", "eth0")
            lab.ip(namespace, "addr", "del", f"203.0.113.{20 + n}/24", "dev", "eth0")
            return
        lab.ip(namespace, "link", "set", "eth0", "down")
        down.append(namespace)
        if len(down) == len(PAIRS):
            timer.start()

    try:
        seconds = BEFORE + (20 if args.case == 1 else args.outage + 14)
        results = stream_across(lab, change, seconds=seconds)
    finally:
        timer.cancel()
        time.sleep(0.1)
        lab.close()
    back = 0.0 if args.case == 1 else args.outage
    print(f"case {args.case}" + ("" if args.case == 1 else f", link down {args.outage:g} s"))
    for pair, events, changed in results:
        done = events[-1]
        if done["event"] != "done":
            print(f"  {pair[0]}->{pair[1]}: FAILED {done}")
            continue
        resume = done["stall_end"] - changed - back
        print(f"  A {pair[0]:6} B {pair[1]:6}: stall {done['stall']:5.1f} s, resume time "
              f"{resume:4.1f} s, {done['received']}/{done['total']} messages, "
              f"{done['duplicates']} duplicates")  # fmt: skip


if __name__ == "__main__":
    main()
