"""The async twin of chat.py: the same chat with ``async with`` and ``async for``.

python examples/chat_async.py alice
python examples/chat_async.py bob alice
"""

import sys

import anyio

from peerpy import Peer


async def main(me: str, them: str | None) -> None:
    async with Peer(me) as peer:
        conn = await peer.connect(them, reliable=True) if them else await peer.accept()
        print(f"connected to {conn.peer}; type lines, Ctrl-D to quit", flush=True)
        async with conn, anyio.create_task_group() as tg:

            async def show() -> None:
                async for line in conn:
                    print(f"{conn.peer}: {line}", flush=True)
                tg.cancel_scope.cancel()  # the other side left

            tg.start_soon(show)
            async for line in anyio.wrap_file(sys.stdin):
                await conn.send(line.rstrip("\n"))
            tg.cancel_scope.cancel()


if __name__ == "__main__":
    # uvloop where installed: peerpy runs about 1.4x faster on it (see docs/performance.md).
    anyio.run(
        main,
        sys.argv[1],
        sys.argv[2] if len(sys.argv) > 2 else None,
        backend_options={"use_uvloop": sys.platform != "win32"},
    )
