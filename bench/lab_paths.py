"""Which route ICE takes, and how long ``connect()`` takes, in the NAT lab.

Builds the lab of tests/lab (root, nftables, coturn), then runs ``--runs``
connections per case, each peer given the broker's STUN and a TURN server (what
operators configure), and prints per case how many ended direct on both sides
and the caller's time to open (``connect()`` to open: min / median / max).

Cases: ``lan`` (two hosts on one LAN), ``cone`` (two cone NATs), ``sym`` (two
symmetric NATs), each on ``--backends`` (``aiortc``, ``wrtc``, or a mixed pair
``listener/caller`` such as ``wrtc/aiortc``; comma-separated).
``--load N`` runs N busy-loop processes (bounded by the run) meanwhile, to
see what a busy machine does to the race between direct and relayed pairs.

    sudo PYTHONPATH=.:protocol:server python bench/lab_paths.py --runs 6 --load 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.lab.fixture import RunningLab, busy, running_lab, stun_server, turn_server

CASES = {"lan": ("lan1", "lan2"), "cone": ("cone1", "cone2"), "sym": ("sym1", "sym2")}


def one(lab: RunningLab, case: str, backend: str) -> dict[str, object]:
    listener, caller = CASES[case]
    outcome = lab.pair(
        listener,
        caller,
        listener_ice=[stun_server(), turn_server(listener)],
        caller_ice=[stun_server(), turn_server(caller)],
        backends=(backend.split("/")[0], backend.split("/")[-1]),
    )
    at_listener, at_caller = outcome.routes
    assert outcome.caller_open is not None
    return {
        "direct": not at_listener["relayed"] and not at_caller["relayed"],
        "opened_in": outcome.caller_open["opened_in"],
        "caller": at_caller["text"],
        "listener": at_listener["text"],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--load", type=int, default=0, help="busy-loop processes meanwhile")
    parser.add_argument("--cases", default="lan,cone,sym")
    parser.add_argument("--backends", default="aiortc,wrtc")
    parser.add_argument("--verbose", action="store_true", help="print every run")
    args = parser.parse_args(argv)
    with running_lab() as lab:
        for backend in args.backends.split(","):
            for case in args.cases.split(","):
                with busy(args.load, seconds=60.0 * args.runs):
                    results = [one(lab, case, backend) for _ in range(args.runs)]
                if args.verbose:
                    for result in results:
                        print(json.dumps(result))
                times = sorted(float(str(r["opened_in"])) for r in results)
                direct = sum(1 for r in results if r["direct"])
                print(
                    f"{backend:11} {case:4} load={args.load}: direct {direct}/{len(results)}, "
                    f"open {times[0]:.2f} / {statistics.median(times):.2f} / {times[-1]:.2f} s",
                    flush=True,
                )


if __name__ == "__main__":
    main()
