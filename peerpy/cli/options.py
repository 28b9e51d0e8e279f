"""The command line's options: the parser, and what the network options resolve to.

Every command takes ``--server``, ``--key``, ``--token``, ``--ice-servers``
and ``--ice-addresses``; without them, ``PEERPY_SERVER``, ``PEERPY_KEY``,
``PEERPY_TOKEN``, ``PEERPY_ICE_SERVERS`` and ``PEERPY_ICE_ADDRESSES`` apply.
With no broker named anywhere, ``send``, ``receive`` and ``chat`` meet on
the local network (:mod:`peerpy.cli.lan`); :func:`receive_command` is the
line a sender prints for the other machine, with the broker when one is used.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from .. import __version__
from ..transfer.errors import TransferUsageError

__all__ = [
    "DEFAULT_DEMO_SIZE",
    "DEFAULT_KEY",
    "LAN_WAIT",
    "build_parser",
    "check_ice_addresses",
    "peer_options",
    "receive_command",
]

DEFAULT_DEMO_SIZE = "64MiB"
DEFAULT_KEY = "peerjs"
#: Seconds ``peerpy receive`` looks for its sender on the local network.
LAN_WAIT = 10.0

_SERVER_HELP = (
    "broker URL, or 'peerjs' for the PeerJS project's public broker (default: "
    "PEERPY_SERVER, else none: send/receive/chat meet on the local network, the sender "
    "running its own broker, found by mDNS; the demo runs one on 127.0.0.1)"
)


def _list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``peerpy`` (exposed for docs and tests)."""
    common = argparse.ArgumentParser(add_help=False)
    net = common.add_argument_group("network (flags win over the environment)")
    net.add_argument("--server", metavar="URL", help=_SERVER_HELP)
    net.add_argument(
        "--key", help=f"the broker's API key (default: PEERPY_KEY, else {DEFAULT_KEY})"
    )
    net.add_argument(
        "--token",
        help="the secret that owns our id on the broker, e.g. a JWT "
        "(default: PEERPY_TOKEN, else a random one)",
    )
    net.add_argument(
        "--ice-servers",
        type=_list,
        metavar="URLS",
        help="comma-separated stun:/turn: URLs, '' for none "
        "(default: PEERPY_ICE_SERVERS, else the broker's, else none)",
    )
    net.add_argument(
        "--ice-addresses",
        type=_list,
        metavar="ADDRS",
        help="comma-separated addresses of this machine ICE may use "
        "(default: PEERPY_ICE_ADDRESSES, else every interface)",
    )
    common.add_argument("-v", "--verbose", action="count", default=0, help="log more (-vv: debug)")

    parser = argparse.ArgumentParser(
        prog="peerpy", description="Peer-to-peer files and chat over WebRTC, PeerJS-compatible."
    )
    parser.add_argument("--version", action="version", version=f"peerpy {__version__}")
    # -v before the command counts too (`peerpy -v send x` as `peerpy send x -v`).
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, dest="verbose_before", help=argparse.SUPPRESS
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    send = sub.add_parser("send", parents=[common], help="send files and folders with a code")
    send.add_argument("paths", nargs="*", metavar="PATH", help="files, folders, or - for stdin")
    send.add_argument("--text", help="send this message instead of files (- reads stdin)")
    send.add_argument("--qr", action="store_true", help="also print the code as a QR code")
    send.add_argument("--code", help="use this code (number-words) instead of a random one")
    send.add_argument("--words", type=int, default=2, help="words in a random code (default 2)")

    receive = sub.add_parser("receive", parents=[common], help="receive with a code")
    receive.add_argument("code", nargs="?", metavar="CODE", help="asked for when left out")
    receive.add_argument(
        "--stdout", action="store_true", help="write the one file to stdout (progress on stderr)"
    )
    receive.add_argument("-o", "--output", default=".", metavar="DIR", help="where to put files")
    receive.add_argument("-y", "--yes", action="store_true", help="accept without asking")
    receive.add_argument(
        "--wait",
        type=float,
        default=LAN_WAIT,
        metavar="S",
        help="with no broker: look this long for the sender on the local network "
        f"(default {LAN_WAIT:g} s)",
    )
    clash = receive.add_mutually_exclusive_group()
    clash.add_argument("--overwrite", action="store_true", help="replace existing files")
    clash.add_argument("--rename", action="store_true", help="save as 'name (1).ext' instead")

    chat = sub.add_parser("chat", parents=[common], help="line-based chat")
    chat.add_argument("id", nargs="?", metavar="ID", help="your peer id (--room: optional)")
    chat.add_argument("remote", nargs="?", metavar="REMOTE", help="peer to connect to")
    chat.add_argument("--room", metavar="NAME", help="group chat with everyone in room NAME")
    chat.add_argument("--name", help="the name the room shows for you (default: your id)")
    chat.add_argument(
        "--wait",
        type=float,
        default=LAN_WAIT,
        metavar="S",
        help="with no broker: look this long for REMOTE on the local network "
        f"(default {LAN_WAIT:g} s)",
    )

    demo = sub.add_parser("demo", parents=[common], help="local transfer demo with a rate")
    demo.add_argument("--size", default=DEFAULT_DEMO_SIZE, help="bytes to send (default 64MiB)")
    return parser


def peer_options(
    args: argparse.Namespace, environ: Mapping[str, str] = os.environ
) -> dict[str, Any]:
    """The Peer settings of a run: flags, else the environment; ``server`` None: no broker."""
    return {
        "server": args.server or environ.get("PEERPY_SERVER") or None,
        "key": args.key or environ.get("PEERPY_KEY") or None,
        "token": args.token or environ.get("PEERPY_TOKEN") or None,
        "ice_servers": args.ice_servers,
        "ice_addresses": args.ice_addresses,
    }


def receive_command(code: str, server: str | None, key: str | None) -> str:
    """What to run on the other machine: ``peerpy receive [--server URL] [--key K] CODE``.

    The broker and a key that is not the default are part of it, so that the
    line works when pasted; the token is not (it is a secret, and each side
    needs its own).
    """
    words = ["peerpy", "receive"]
    if server is not None:
        words += ["--server", server]
    if key is not None and key != DEFAULT_KEY:
        words += ["--key", key]
    return shlex.join([*words, code])


def check_ice_addresses(
    addresses: Sequence[str] | None, environ: Mapping[str, str] = os.environ
) -> None:
    """Refuse an ICE address that is not one of this machine's (a usage error, exit 2).

    Checked at start: otherwise ICE gathers nothing there and the other side
    fails 30 s later with no clue why.
    """
    if addresses is None:
        addresses = _list(environ.get("PEERPY_ICE_ADDRESSES", ""))
        where = "PEERPY_ICE_ADDRESSES"
    else:
        where = "--ice-addresses"
    if not addresses:
        return
    mine = _local_addresses()
    for address in addresses:
        try:
            parsed = ipaddress.ip_address(address)
        except ValueError:
            raise TransferUsageError(f"{where}: {address!r} is not an IP address") from None
        if not parsed.is_loopback and parsed not in mine:
            known = ", ".join(sorted(str(a) for a in mine)) or "none"
            raise TransferUsageError(
                f"{where}: {address} is not an address of this machine (its addresses: {known})"
            )


def _local_addresses() -> set[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    import ifaddr

    found: set[ipaddress.IPv4Address | ipaddress.IPv6Address] = set()
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            text = ip.ip if isinstance(ip.ip, str) else ip.ip[0]
            found.add(ipaddress.ip_address(text.split("%")[0]))
    return found
