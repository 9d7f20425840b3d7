"""Drive Debian's headless Chromium through its DevTools protocol, over aiohttp's websocket client.

Just enough of the protocol for the UI tests: set a cookie, open a page, wait for its load
event, evaluate JavaScript and take a screenshot. Chromium runs with the flags that keep it
off the network and a fresh profile; the process group is killed on exit.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-extensions", "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio",
)


def chromium_path() -> str | None:
    """Return the Chromium binary (``CHROMIUM`` or Debian's ``/usr/bin/chromium``), or None."""
    for candidate in (os.environ.get("CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and Path(candidate).exists():
            return candidate
    return None


class Browser:
    """One headless Chromium with one page, driven over the DevTools protocol."""

    def __init__(self, binary: str, *, width: int = 1280, height: int = 900) -> None:
        self.binary, self.width, self.height = binary, width, height
        self.profile = Path(tempfile.mkdtemp(prefix="carbon-ui-chromium-"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.session: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self._ids = itertools.count(1)
        self._events: list[dict[str, Any]] = []

    def _launch(self) -> int:
        """Start Chromium and return its DevTools port (blocking: run in a thread)."""
        self.proc = subprocess.Popen(
            [self.binary, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}", "--remote-debugging-port=0",
             f"--window-size={self.width},{self.height}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, start_new_session=True)
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            if self.proc.poll() is not None:
                raise RuntimeError(f"chromium exited with {self.proc.returncode} before DevTools was up")
            if time.monotonic() > deadline:
                raise RuntimeError("chromium's DevTools port did not appear within 60 s")
            time.sleep(0.2)
        return int(port_file.read_text().split()[0])

    async def __aenter__(self) -> Browser:
        try:
            return await self._connect()
        except BaseException:
            await self.__aexit__()
            raise

    async def _connect(self) -> Browser:
        port = await asyncio.to_thread(self._launch)
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
        async with self.session.get(f"http://127.0.0.1:{port}/json/list") as response:
            pages = [t for t in await response.json() if t.get("type") == "page"]
        self.ws = await self.session.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0)
        await self.send("Page.enable")
        await self.send("Network.enable")
        await self.send("Emulation.setDeviceMetricsOverride", width=self.width, height=self.height,
                        deviceScaleFactor=1, mobile=False)
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            if self.ws is not None:
                await self.ws.close()
            if self.session is not None:
                await self.session.close()
        finally:
            if self.proc is not None and self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
            shutil.rmtree(self.profile, ignore_errors=True)

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        """Call one DevTools method and return its result (events that arrive meanwhile are kept)."""
        assert self.ws is not None
        ident = next(self._ids)
        await self.ws.send_str(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            message = json.loads((await self.ws.receive(timeout=60)).data)
            if message.get("id") == ident:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return dict(message.get("result") or {})
            self._events.append(message)

    async def _event(self, method: str, timeout: float) -> dict[str, Any]:
        assert self.ws is not None
        for index, event in enumerate(self._events):
            if event.get("method") == method:
                return self._events.pop(index)
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {method} within {timeout:.0f} s")
            message = json.loads((await self.ws.receive(timeout=remaining)).data)
            if message.get("method") == method:
                return dict(message)
            self._events.append(message)

    async def set_cookie(self, url: str, name: str, value: str) -> None:
        """Set a cookie for ``url`` (as the login redirect of Airflow's auth manager does)."""
        result = await self.send("Network.setCookie", url=url, name=name, value=value, path="/", httpOnly=True,
                                 sameSite="Lax")
        assert result.get("success", True), result

    async def open(self, url: str, timeout: float = 60) -> int:
        """Open ``url``, wait for its load event and return the HTTP status of the document."""
        self._events.clear()
        await self.send("Page.navigate", url=url)
        await self._event("Page.loadEventFired", timeout)
        statuses = [e["params"]["response"]["status"] for e in self._events
                    if e.get("method") == "Network.responseReceived" and e["params"].get("type") == "Document"]
        return int(statuses[0]) if statuses else 0

    async def evaluate(self, expression: str) -> Any:
        """Evaluate ``expression`` in the page and return its JSON value."""
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression!r} raised: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 60) -> Any:
        """Evaluate ``expression`` until it is truthy; return its value (bounded by ``timeout``)."""
        deadline = time.monotonic() + timeout
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"{expression!r} still falsy after {timeout:.0f} s")
            await asyncio.sleep(0.25)

    async def screenshot(self, path: Path, *, full_page: bool = True, element: str | None = None,
                         from_top: bool = False, margin: int = 8) -> Path:
        """Save a PNG of the page (the whole page, by default) to ``path``.

        With ``element`` (a CSS selector), only that element and ``margin`` pixels around it; with
        ``from_top`` too, everything from the top of the page down to the element's bottom.
        """
        params: dict[str, Any] = {"format": "png"}
        if element is not None:
            box = await self.evaluate(
                f"(() => {{ const e = document.querySelector({json.dumps(element)}); if (!e) return null;"
                " const b = e.getBoundingClientRect(); return [b.left + window.scrollX, b.top + window.scrollY,"
                " b.width, b.height]; })()")
            if box is None:
                raise RuntimeError(f"no {element} on the page to take a screenshot of")
            left, top = max(0.0, box[0] - margin), 0.0 if from_top else max(0.0, box[1] - margin)
            params.update(captureBeyondViewport=True, clip={
                "x": left, "y": top, "width": box[2] + 2 * margin, "height": box[1] + box[3] + margin - top, "scale": 1})
        elif full_page:
            size = await self.evaluate("[document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
            params.update(captureBeyondViewport=True,
                          clip={"x": 0, "y": 0, "width": max(size[0], self.width), "height": size[1], "scale": 1})
        data = await self.send("Page.captureScreenshot", **params)
        await asyncio.to_thread(_write, path, base64.b64decode(data["data"]))
        return path


def _write(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
