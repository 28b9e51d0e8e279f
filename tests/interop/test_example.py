"""examples/browser: the page and serve.py chat both ways with a real browser tab."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from anyio.abc import ByteReceiveStream, Process
from peerpy_protocol.ids import random_token
from playwright.async_api import BrowserContext

from ..helpers.brokers import free_port, peerpy_server
from .browser import launch

pytestmark = [pytest.mark.anyio, pytest.mark.interop]

SERVE = Path(__file__).parents[2] / "examples" / "browser" / "serve.py"


class Lines:
    """Read a process's output until some text shows up."""

    def __init__(self, stream: ByteReceiveStream) -> None:
        self.stream = stream
        self.text = ""

    async def until(self, needle: str, seconds: float = 15.0) -> str:
        with anyio.fail_after(seconds):
            while needle not in self.text:
                self.text += (await self.stream.receive()).decode()
        return self.text


async def stop(process: Process) -> None:
    if process.returncode is None:
        process.terminate()
        with anyio.move_on_after(5):
            await process.wait()
    if process.returncode is None:
        process.kill()
        await process.wait()


async def start_serve(broker: str, python_id: str) -> tuple[Process, Lines, str]:
    """serve.py in a subprocess; return it, its output and the page's URL."""
    process = await anyio.open_process(
        [sys.executable, str(SERVE), "--server", broker, "--id", python_id,
         "--http-port", str(free_port())],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    assert process.stdout is not None
    out = Lines(process.stdout)
    text = await out.until("in a browser")
    return process, out, text.split("* open ", 1)[1].split()[0]


async def test_example_page_connects_or_says_why_on_loopback_with_stock_chromium(
    tmp_path: Path,
) -> None:
    """On a loopback-only host a Chromium without --allow-loopback-in-peer-connection
    mostly offers no ICE candidate and never finishes gathering (once in a few runs it
    connects anyway): the page either connects or says why within seconds, never hangs."""
    python_id = "python-" + random_token()
    async with peerpy_server(path="/") as broker:
        process, _out, url = await start_serve(broker, python_id)
        try:
            async with launch(tmp_path / "profile", url.rstrip("/"), loopback=False) as context:
                page = await context.new_page()
                await page.goto(url + "?id=tab-" + python_id)
                await page.click("#call")
                log = ""
                with anyio.fail_after(8):  # the page gives up after 2.5 s without a candidate
                    while "cannot connect" not in log and "connected to" not in log:
                        await anyio.sleep(0.1)
                        log = await page.inner_text("#log")
                if "cannot connect" in log:
                    assert "found no network address" in log
                    assert "--allow-loopback-in-peer-connection" in log
                    await page.wait_for_selector("#call:not([disabled])", timeout=2_000)
        finally:
            await stop(process)


async def test_example_page_and_script_chat(chromium: BrowserContext) -> None:
    """The tab connects to serve.py's Python peer and messages flow both ways."""
    python_id = "python-" + random_token()
    async with peerpy_server(path="/") as broker:
        process = await anyio.open_process(
            [sys.executable, str(SERVE), "--server", broker, "--id", python_id,
             "--http-port", str(free_port())],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            assert process.stdout is not None
            assert process.stdin is not None
            out = Lines(process.stdout)
            text = await out.until("in a browser")
            url = text.split("* open ", 1)[1].split()[0]
            await chromium.grant_permissions(["microphone", "camera"], origin=url.rstrip("/"))
            page = await chromium.new_page()
            try:
                await page.goto(url + "?id=tab-" + python_id)
                await page.click("#call")
                await page.wait_for_selector(f"text=connected to {python_id}", timeout=15_000)
                await page.fill("input[name=text]", "hello from the tab ✓")
                await page.press("input[name=text]", "Enter")
                await out.until(f"tab-{python_id}: hello from the tab ✓")
                await process.stdin.send("hello from Python ü\n".encode())
                await page.wait_for_selector(
                    f"text={python_id}: hello from Python ü", timeout=15_000
                )
            finally:
                await page.close()
            await process.stdin.aclose()  # end of input: the script quits
            with anyio.fail_after(10):
                assert await process.wait() == 0
        finally:
            await stop(process)
