"""Probe a STUN or TURN server from a lab namespace with aioice; print one JSON line.

``stun HOST PORT``: a Binding request; reports the mapped address.
``turn HOST PORT USERNAME PASSWORD [udp|tcp]``: a TURN allocation; reports the
relayed address, or the error (coturn answers 401 to bad credentials).
``permissions HOST PORT USERNAME PASSWORD PEER...``: a UDP allocation, then one
CreatePermission per peer address; reports, for each, ``"granted"`` or the
server's error (coturn: ``403`` for a denied peer address).  No packet is sent
to any peer.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import cast

from aioice import stun
from aioice.turn import TurnClientUdpProtocol, create_turn_endpoint


class _Client(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.response: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if not self.response.done():
            self.response.set_result(data)


async def probe_stun(host: str, port: int) -> dict[str, object]:
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_datagram_endpoint(_Client, remote_addr=(host, port))
    try:
        request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
        if hasattr(request, "add_fingerprint"):  # aioice >= 0.13
            request.add_fingerprint()
        for _ in range(3):
            transport.sendto(bytes(request))
            try:
                data = await asyncio.wait_for(asyncio.shield(client.response), 1.0)
                break
            except TimeoutError:
                continue
        else:
            return {"ok": False, "error": "no STUN response"}
        response = stun.parse_message(data)
        return {
            "ok": response.message_class == stun.Class.RESPONSE
            and response.transaction_id == request.transaction_id,
            "mapped": list(response.attributes["XOR-MAPPED-ADDRESS"]),
            "local": list(transport.get_extra_info("sockname")[:2]),
        }
    finally:
        transport.close()


async def probe_turn(
    host: str, port: int, user: str, password: str, kind: str
) -> dict[str, object]:
    try:
        transport, _ = await asyncio.wait_for(
            create_turn_endpoint(
                asyncio.DatagramProtocol, (host, port), user, password, transport=kind
            ),
            10,
        )
    except Exception as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    relayed = transport.get_extra_info("sockname")
    transport.close()
    await asyncio.sleep(0.2)  # let the allocation be deleted
    return {"ok": True, "relayed": list(relayed)}


async def probe_permissions(
    host: str, port: int, user: str, password: str, peers: list[str]
) -> dict[str, object]:
    loop = asyncio.get_running_loop()
    server = (host, port)
    transport, client = await loop.create_datagram_endpoint(
        lambda: TurnClientUdpProtocol(
            server, username=user, password=password, lifetime=60, channel_refresh_time=30
        ),
        remote_addr=server,
    )
    try:
        relayed = await asyncio.wait_for(client.connect(), 10)
        verdicts: dict[str, str] = {}
        for peer in peers:
            request = stun.Message(
                message_method=stun.Method.CREATE_PERMISSION, message_class=stun.Class.REQUEST
            )
            request.attributes["XOR-PEER-ADDRESS"] = (peer, 0)
            try:
                await asyncio.wait_for(client.request_with_retry(request), 5)
                verdicts[peer] = "granted"
            except stun.TransactionFailed as exc:
                code, reason = exc.response.attributes["ERROR-CODE"]
                verdicts[peer] = f"{code} {reason}"
            except Exception as exc:
                verdicts[peer] = f"{type(exc).__name__}: {exc}"
        await asyncio.wait_for(client.delete(), 5)
        return {"ok": True, "relayed": list(relayed), "permissions": verdicts}
    finally:
        transport.close()


async def main(argv: list[str]) -> dict[str, object]:
    if argv[0] == "stun":
        return await probe_stun(argv[1], int(argv[2]))
    if argv[0] == "permissions":
        return await probe_permissions(argv[1], int(argv[2]), argv[3], argv[4], argv[5:])
    kind = argv[5] if len(argv) > 5 else "udp"
    return await probe_turn(argv[1], int(argv[2]), argv[3], argv[4], kind)


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1:]))), flush=True)
