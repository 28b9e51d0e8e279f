"""``peerpy-server``: run the broker from the command line, with ``peer``'s flags.

The flags, their aliases, defaults and units (milliseconds) are those of
``peer`` 1.0.2's ``peerjs`` command, including the ``PORT`` and
``PEERSERVER_PATH`` environment variables; a few extra flags expose our
improvements.  SIGTERM and SIGINT shut the broker down gracefully.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Coroutine, Sequence
from typing import Any

from . import __version__
from .auth import WeakSecretError
from .broker import Broker
from .config import BrokerConfig
from .logs import JsonFormatter, RedactSecrets

__all__ = ["DEFAULT_PORT", "build_parser", "config_from_args", "main"]

#: The port clients assume (peerpy's DEFAULT_SERVER is http://127.0.0.1:9000/).
DEFAULT_PORT = 9000

_DESCRIPTION = """\
A PeerJS-compatible signaling server (wire-compatible with peer 1.0.2).
Clients connect with `new Peer(id, {host, port, path, key})`.
Times are in milliseconds, as with peer's `peerjs` command."""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (``-h`` explains each flag)."""
    parser = argparse.ArgumentParser(prog="peerpy-server", description=_DESCRIPTION)
    add = parser.add_argument
    add("--version", action="version", version=f"peerpy-server {__version__}")
    add(
        "-p",
        "--port",
        type=int,
        help=f"port to listen on (default: env PORT, else {DEFAULT_PORT}, where peerpy looks)",
    )
    add(
        "-H",
        "--host",
        action="append",
        help="address to listen on, repeatable (default: every interface)",
    )
    add(
        "--path",
        default=os.environ.get("PEERSERVER_PATH", "/"),
        help="mount path of the API; WebSocket at PATH/peerjs (default: env PEERSERVER_PATH or /)",
    )
    add("-k", "--key", default="peerjs", help="API key clients must send (default: peerjs)")
    add(
        "-t",
        "--expire_timeout",
        type=int,
        default=5000,
        metavar="MS",
        help="ms a message for an offline peer waits before its sender gets EXPIRE (default: 5000)",
    )
    add(
        "--alive_timeout",
        type=int,
        default=60000,
        metavar="MS",
        help="ms without HEARTBEAT after which a client is dropped (default: 60000)",
    )
    add(
        "-c",
        "--concurrent_limit",
        type=int,
        default=5000,
        help="most peers registered at once (default: 5000)",
    )
    add(
        "--allow_discovery",
        action="store_true",
        help="serve the list of connected ids at PATH/KEY/peers (default: off, 401)",
    )
    add("--proxied", action="store_true", help="behind a reverse proxy (accepted; changes nothing)")
    add("--sslkey", metavar="FILE", help="TLS private key (PEM); needs --sslcert")
    add("--sslcert", metavar="FILE", help="TLS certificate chain (PEM); needs --sslkey")
    add(
        "--cors",
        nargs="+",
        action="extend",
        metavar="ORIGIN",
        help="allowed CORS origins (default: reflect any Origin)",
    )
    extra = parser.add_argument_group("peerpy extras")
    extra.add_argument(
        "--any-id",
        action="store_true",
        help="accept any non-empty id, as peer does (default: the PeerJS client's id rule)",
    )
    extra.add_argument(
        "--silent-takeover",
        action="store_true",
        help="on a same-token reconnect, send no OPEN and keep the old socket, as peer does",
    )
    extra.add_argument(
        "--ping-interval",
        type=float,
        default=20.0,
        metavar="S",
        help="seconds between WebSocket pings; 0 disables (default: 20)",
    )
    limits = parser.add_argument_group(
        "abuse limits (docs/broker.md, Limits); 0 turns a count cap or the rate limit off"
    )
    defaults = BrokerConfig()

    def limit(flag: str, kind: type, default: object, metavar: str, text: str) -> None:
        limits.add_argument(flag, type=kind, default=default, metavar=metavar, help=text)

    limit(
        "--max-connections-per-ip",
        int,
        defaults.max_connections_per_ip,
        "N",
        "most TCP connections from one address (default: %(default)s)",
    )
    limit(
        "--max-handshakes-per-ip",
        int,
        defaults.max_handshakes_per_ip,
        "N",
        "most connections from one address still in their handshake (default: %(default)s)",
    )
    limit(
        "--handshake-timeout",
        float,
        defaults.handshake_timeout,
        "S",
        "seconds a connection may take to send its request (default: %(default)s)",
    )
    limit(
        "--max-connections",
        int,
        None,
        "N",
        "most TCP connections in total (default: concurrent_limit + 1024)",
    )
    limit(
        "--rate-limit",
        float,
        defaults.rate_limit,
        "MSG/S",
        "messages per second one WebSocket may send on average (default: %(default)s)",
    )
    limit(
        "--rate-burst",
        int,
        defaults.rate_burst,
        "N",
        "messages one WebSocket may send at once (default: %(default)s)",
    )
    limit(
        "--max-queued-bytes",
        int,
        defaults.max_queued_bytes,
        "BYTES",
        "memory budget of all queues for offline ids (default: %(default)s)",
    )
    limit(
        "--max-queues",
        int,
        defaults.max_queues,
        "N",
        "most offline ids with queued messages (default: %(default)s)",
    )
    limit(
        "--max-queues-per-sender",
        int,
        defaults.max_queues_per_sender,
        "N",
        "most offline ids one sender may have messages queued for (default: %(default)s)",
    )
    limit(
        "--warning-interval",
        float,
        defaults.warning_interval,
        "S",
        "log a repeated warning at most once per S seconds (default: %(default)s)",
    )
    rooms = parser.add_argument_group("rooms (docs/rooms.md); 0 turns a bound off")
    for flag, kind, default, metavar, text in (
        ("--room-max-members", int, defaults.room_max_members, "N", "most members of one room"),
        ("--rooms-per-client", int, defaults.rooms_per_client, "N", "most rooms one client is in"),
        ("--max-rooms", int, defaults.max_rooms, "N", "most rooms at once (cluster-wide)"),
        ("--room-metadata-bytes", int, defaults.room_metadata_bytes, "BYTES",
         "largest member metadata, as compact JSON"),
        ("--room-rate", float, defaults.room_rate, "OPS/S",
         "room joins and leaves per second one client may make on average"),
        ("--room-burst", int, defaults.room_burst, "N",
         "room joins and leaves one client may make at once"),
    ):  # fmt: skip
        rooms.add_argument(
            flag, type=kind, default=default, metavar=metavar, help=f"{text} (default: %(default)s)"
        )
    sfu = parser.add_argument_group("rooms through an SFU (docs/rooms.md)")
    sfu.add_argument(
        "--janus",
        action="append",
        default=[],
        metavar="URL[,PUBLIC_URL]",
        help="a Janus WebSocket API (repeatable): room media then goes through Janus's "
        "VideoRoom; PUBLIC_URL, if given, is what members connect to",
    )
    for flag, env, text in (
        ("--janus-key", "PEERPY_JANUS_KEY", "key Janus room secrets and PINs derive from: the "
         "same on every broker of a cluster (default: env %s, else random per process)"),
        ("--janus-admin-key", "PEERPY_JANUS_ADMIN_KEY",
         "the VideoRoom admin_key Janus requires to create rooms (default: env %s)"),
    ):  # fmt: skip
        sfu.add_argument(flag, default=os.environ.get(env), metavar="KEY", help=text % env)
    ice = parser.add_argument_group("ICE servers for peers (served at PATH/KEY/ice)")
    ice.add_argument("--stun", action="store_true", help="answer STUN binding requests on UDP")
    ice.add_argument("--stun-port", type=int, default=3478, help="UDP port of --stun (3478)")
    ice.add_argument("--turn-url", metavar="URL[,URL...]", help="TURN URL(s) to hand out")
    ice.add_argument(
        "--turn-secret",
        default=os.environ.get("PEERPY_TURN_SECRET"),
        help="coturn's static-auth-secret (default: env PEERPY_TURN_SECRET)",
    )
    ice.add_argument(
        "--turn-ttl",
        type=float,
        default=BrokerConfig().turn_ttl,
        help="seconds minted TURN credentials stay valid (default: %(default)s)",
    )
    prod = parser.add_argument_group("production (docs/broker.md, Operating it)")
    prod.add_argument(
        "--jwt-secret",
        default=os.environ.get("PEERPY_JWT_SECRET"),
        metavar="SECRET",
        help="require a JWT (HS256) signed with SECRET as token (default: env PEERPY_JWT_SECRET)",
    )
    prod.add_argument(
        "--jwt-public-key",
        metavar="FILE",
        help="require a JWT (RS256/ES256) verified by this PEM public key as token",
    )
    prod.add_argument(
        "--jwt-audience",
        metavar="AUD",
        help="with --jwt-*: the token's aud claim must be AUD (default: not checked)",
    )
    prod.add_argument(
        "--redis",
        metavar="URL",
        default=os.environ.get("PEERPY_REDIS_URL"),
        help="cluster mode: share ids, relays and queues with every broker on this Redis "
        "(redis://host:port/db; default: env PEERPY_REDIS_URL, else in memory)",
    )
    prod.add_argument(
        "--redis-prefix",
        default="peerpy:",
        help="prefix of the cluster's Redis keys and channels (default: peerpy:)",
    )
    prod.add_argument(
        "--log-format",
        default="text",
        choices=["text", "json"],
        help="text lines or one JSON object per line (default: text)",
    )
    extra.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="logging level on stderr (default: INFO)",
    )
    return parser


def config_from_args(args: argparse.Namespace) -> BrokerConfig:
    """Turn parsed flags into a :class:`BrokerConfig` (ms become seconds).

    Raise :class:`ValueError` for a missing port or a lone TLS file.
    """
    port = args.port
    if port is None:
        env_port = os.environ.get("PORT")
        try:
            port = int(env_port) if env_port else DEFAULT_PORT
        except ValueError:
            raise ValueError(f"the PORT environment variable is not a port: {env_port!r}") from None
    if (args.sslkey is None) != (args.sslcert is None):
        raise ValueError(
            "Warning: PeerServer will not run because either the key "
            "or the certificate has not been provided."
        )
    if args.turn_url and not args.turn_secret:
        raise ValueError("--turn-url needs --turn-secret (or PEERPY_TURN_SECRET)")
    public_key = None
    if args.jwt_public_key is not None:
        try:
            with open(args.jwt_public_key, encoding="utf-8") as file:
                public_key = file.read()
        except OSError as exc:
            raise ValueError(f"cannot read --jwt-public-key: {exc}") from None
        if args.jwt_secret is not None:
            raise ValueError("give --jwt-secret or --jwt-public-key, not both")
    if args.jwt_secret is not None or public_key is not None:
        from .auth import JwtAuthorizer

        # Fail early on a bad key or a short secret (WeakSecretError).
        JwtAuthorizer(secret=args.jwt_secret, public_key=public_key, audience=args.jwt_audience)
    elif args.jwt_audience is not None:
        raise ValueError("--jwt-audience needs --jwt-secret or --jwt-public-key")
    defaults = BrokerConfig()
    return BrokerConfig(
        host=_hosts(args.host),
        port=port,
        path=args.path,
        key=args.key,
        expire_timeout=args.expire_timeout / 1000,
        alive_timeout=args.alive_timeout / 1000,
        concurrent_limit=args.concurrent_limit,
        allow_discovery=args.allow_discovery,
        proxied=args.proxied,
        ssl_keyfile=args.sslkey,
        ssl_certfile=args.sslcert,
        cors_origins=args.cors,
        id_pattern=None if args.any_id else defaults.id_pattern,
        open_on_takeover=not args.silent_takeover,
        ping_interval=args.ping_interval or None,
        handshake_timeout=args.handshake_timeout,
        max_connections=args.max_connections or None,
        max_connections_per_ip=args.max_connections_per_ip or None,
        max_handshakes_per_ip=args.max_handshakes_per_ip or None,
        rate_limit=args.rate_limit or None,
        rate_burst=args.rate_burst,
        max_queued_bytes=args.max_queued_bytes,
        max_queues=args.max_queues or None,
        max_queues_per_sender=args.max_queues_per_sender or None,
        warning_interval=args.warning_interval or None,
        room_max_members=args.room_max_members or None,
        rooms_per_client=args.rooms_per_client or None,
        max_rooms=args.max_rooms or None,
        room_metadata_bytes=args.room_metadata_bytes or None,
        room_rate=args.room_rate or None,
        room_burst=args.room_burst,
        stun_port=args.stun_port if args.stun else None,
        turn_urls=[url.strip() for url in str(args.turn_url or "").split(",") if url.strip()],
        turn_secret=args.turn_secret if args.turn_url else None,
        turn_ttl=args.turn_ttl,
        jwt_secret=args.jwt_secret,
        jwt_public_key=public_key,
        jwt_audience=args.jwt_audience,
        redis_url=args.redis or None,
        redis_prefix=args.redis_prefix,
        janus_urls=args.janus,
        janus_key=args.janus_key,
        janus_admin_key=args.janus_admin_key,
    )


def _hosts(hosts: list[str] | None) -> str | tuple[str, ...] | None:
    """``--host`` given once is a string, several times a tuple; none: every interface."""
    if not hosts:
        return None
    return hosts[0] if len(hosts) == 1 else tuple(hosts)


async def _run(config: BrokerConfig) -> None:
    """Serve until SIGTERM or SIGINT, then shut down gracefully."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with Broker(config) as broker:
            where = config.host if isinstance(config.host, str) else ", ".join(config.host or ())
            print(
                f"Started PeerServer on {where or '::'}, port: {broker.port}, "
                f"path: {config.path} ({broker.url})",
                flush=True,
            )
            for address in broker.addresses:
                every = " (every interface)" if address.startswith(("0.0.0.0:", "[::]:")) else ""
                print(f"listening on {address}{every}", flush=True)
            await stop.wait()
            print("Shutting down", flush=True)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def _run_loop(coro: Coroutine[Any, Any, None]) -> None:
    """Run ``coro`` on uvloop when it is installed, else on asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)
        return
    if sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(coro)
    else:  # pragma: no cover - Python 3.10
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        asyncio.run(coro)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``peerpy-server``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except WeakSecretError as exc:
        print(f"peerpy-server: error: {exc}", file=sys.stderr)
        return 2  # a usage error, as argparse's
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 1
    handler = logging.StreamHandler()
    if args.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    handler.addFilter(RedactSecrets())  # tokens in request lines, whichever library logs them
    logging.basicConfig(level=args.log_level, handlers=[handler])
    try:
        _run_loop(_run(config))
    except OSError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
