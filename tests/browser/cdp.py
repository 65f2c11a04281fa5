"""A small Chrome DevTools Protocol client for the browser tests (trio + trio-websocket).

Starts Debian's `chromium` headless with a fresh profile, finds the DevTools port in the
profile's `DevToolsActivePort` file, and talks to one page through a flattened target
session on the browser's WebSocket. Every wait has a deadline, and the browser is killed
in `finally` whatever happens. No selenium, no playwright, nothing downloaded.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import trio
from trio_websocket import WebSocketConnection, open_websocket_url

# As root Chromium needs --no-sandbox; the network flags keep it from calling home on a
# machine with a closed network.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--mute-audio",
    "--autoplay-policy=user-gesture-required",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
)
START_TIMEOUT_S = 20.0
COMMAND_TIMEOUT_S = 15.0


class BrowserError(Exception):
    """Chromium did not start, or answered a command with an error (our test's fault)."""


def find_chromium() -> str | None:
    """`$BOBA_CHROMIUM`, else Debian's `chromium` (or `chromium-browser`) on PATH."""
    explicit = os.environ.get("BOBA_CHROMIUM")
    if explicit:
        return explicit
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


class Page:
    """One browser tab, spoken to through its CDP session id."""

    def __init__(self, browser: Browser, session_id: str, target_id: str) -> None:
        self._browser = browser
        self.session_id = session_id
        self.target_id = target_id

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        return await self._browser.send(method, params, session_id=self.session_id)

    async def set_viewport(self, width: int, height: int) -> None:
        await self.send(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )

    async def goto(self, url: str, *, timeout: float = COMMAND_TIMEOUT_S) -> None:
        result = await self.send("Page.navigate", url=url)
        if result.get("errorText"):
            raise BrowserError(f"navigating to {url} failed: {result['errorText']}")
        await self.wait_for(
            f"document.readyState === 'complete' && location.href === {json.dumps(url)}",
            timeout=timeout,
        )

    async def evaluate(self, expression: str) -> Any:
        """The JSON value of `expression` (promises awaited); page exceptions raise."""
        result = await self.send(
            "Runtime.evaluate",
            expression=expression,
            awaitPromise=True,
            returnByValue=True,
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise BrowserError(f"page script failed: {text}")
        return result["result"].get("value")

    async def wait_for(
        self, expression: str, *, timeout: float = 5.0, interval: float = 0.025
    ) -> Any:
        """Poll until `expression` is truthy; its value, or TimeoutError with the last one."""
        last: Any = None
        with trio.move_on_after(timeout):
            while True:
                last = await self.evaluate(expression)
                if last:
                    return last
                await trio.sleep(interval)
        raise TimeoutError(f"waited {timeout} s for {expression!r}; last value {last!r}")

    async def click(self, selector: str) -> None:
        """A real mouse click in the middle of the element (a user gesture)."""
        box = await self.evaluate(
            f"""(() => {{
                const el = document.querySelector({json.dumps(selector)});
                if (!el) return null;
                el.scrollIntoView({{block: 'center'}});
                const r = el.getBoundingClientRect();
                return {{x: r.left + r.width / 2, y: r.top + r.height / 2}};
            }})()"""
        )
        if not box:
            raise BrowserError(f"nothing on the page matches {selector!r}")
        for kind in ("mousePressed", "mouseReleased"):
            await self.send(
                "Input.dispatchMouseEvent",
                type=kind,
                x=box["x"],
                y=box["y"],
                button="left",
                clickCount=1,
            )

    async def type_text(self, text: str) -> None:
        await self.send("Input.insertText", text=text)

    async def press_key(self, key: str, code: str, key_code: int, text: str = "") -> None:
        """A key press the page sees as a user gesture (Enter: text="\\r" activates)."""
        down: dict[str, Any] = {"type": "keyDown" if text else "rawKeyDown"}
        if text:
            down["text"] = text
        for event in (down, {"type": "keyUp"}):
            await self.send(
                "Input.dispatchKeyEvent",
                key=key,
                code=code,
                windowsVirtualKeyCode=key_code,
                **event,
            )

    async def press_enter(self) -> None:
        await self.press_key("Enter", "Enter", 13, text="\r")

    async def press_tab(self) -> None:
        await self.press_key("Tab", "Tab", 9)

    async def screenshot(self, path: Path, *, full_page: bool = False) -> Path:
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            params["captureBeyondViewport"] = True
        result = await self.send("Page.captureScreenshot", **params)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(result["data"]))
        return path


class Browser:
    """A running headless Chromium and the one WebSocket to its DevTools endpoint."""

    def __init__(self, ws: WebSocketConnection) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self._waiting: dict[int, trio.MemorySendChannel[dict[str, Any]]] = {}
        self.console: list[str] = []  # console messages and page errors, for test failures
        self.requested_urls: list[str] = []  # every URL a page asked for (Network domain)

    async def send(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        session_id: str | None = None,
        timeout: float = COMMAND_TIMEOUT_S,
    ) -> dict[str, Any]:
        message_id = next(self._ids)
        message: dict[str, Any] = {"id": message_id, "method": method, "params": params or {}}
        if session_id is not None:
            message["sessionId"] = session_id
        send_reply, receive_reply = trio.open_memory_channel[dict[str, Any]](1)
        self._waiting[message_id] = send_reply
        try:
            await self._ws.send_message(json.dumps(message))
            with trio.fail_after(timeout):
                reply = await receive_reply.receive()
        except trio.TooSlowError:
            raise BrowserError(f"{method} got no answer in {timeout} s") from None
        finally:
            self._waiting.pop(message_id, None)
        if "error" in reply:
            raise BrowserError(f"{method} failed: {reply['error'].get('message')}")
        result: dict[str, Any] = reply.get("result", {})
        return result

    async def _read(self) -> None:
        while True:
            message = json.loads(await self._ws.get_message())
            if "id" in message:
                waiter = self._waiting.get(message["id"])
                if waiter is not None:
                    waiter.send_nowait(message)
                continue
            method = message.get("method")
            params = message.get("params", {})
            if method == "Runtime.consoleAPICalled":
                args = " ".join(
                    str(arg.get("value", arg.get("description", ""))) for arg in params["args"]
                )
                self.console.append(f"console.{params['type']}: {args}")
            elif method == "Network.requestWillBeSent":
                self.requested_urls.append(params["request"]["url"])
            elif method == "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                text = details.get("exception", {}).get("description") or details.get("text")
                self.console.append(f"page error: {text}")

    async def new_page(self, *, width: int = 1280, height: int = 800) -> Page:
        target = await self.send("Target.createTarget", {"url": "about:blank"})
        attached = await self.send(
            "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}
        )
        page = Page(self, attached["sessionId"], target["targetId"])
        await page.send("Page.enable")
        await page.send("Runtime.enable")
        await page.send("Network.enable")
        await page.set_viewport(width, height)
        return page


async def _devtools_url(profile: Path, process: trio.Process, log: Path) -> str:
    """Wait for Chromium to write `DevToolsActivePort` (port, then the browser path)."""
    port_file = profile / "DevToolsActivePort"
    with trio.move_on_after(START_TIMEOUT_S):
        while True:
            if process.returncode is not None:
                break
            if port_file.exists():
                lines = port_file.read_text().splitlines()
                if len(lines) >= 2 and lines[0].isdigit():
                    return f"ws://127.0.0.1:{lines[0]}{lines[1]}"
            await trio.sleep(0.05)
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
    raise BrowserError(f"Chromium did not open its DevTools port; its log ends:\n{tail}")


@asynccontextmanager
async def launch_browser(
    executable: str | None = None, *, window: tuple[int, int] = (1280, 800),
    extra_flags: tuple[str, ...] = (),
) -> AsyncIterator[Browser]:
    """Start Chromium headless with a throwaway profile; kill it and delete it on exit."""
    chromium = executable or find_chromium()
    if chromium is None:
        raise BrowserError("no chromium on PATH: run scripts/setup-browser.sh")
    with tempfile.TemporaryDirectory(prefix="boba-chromium-") as tmp:
        profile = Path(tmp) / "profile"
        profile.mkdir()
        log = Path(tmp) / "chromium.log"
        with log.open("wb") as log_file:
            process = await trio.lowlevel.open_process(
                [
                    chromium,
                    *CHROMIUM_FLAGS,
                    *extra_flags,
                    f"--user-data-dir={profile}",
                    f"--window-size={window[0]},{window[1]}",
                    "about:blank",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
                start_new_session=True,
            )
            try:
                url = await _devtools_url(profile, process, log)
                async with (
                    open_websocket_url(url, max_message_size=64 * 1024 * 1024) as ws,
                    trio.open_nursery() as nursery,
                ):
                    browser = Browser(ws)
                    nursery.start_soon(browser._read)
                    try:
                        yield browser
                    finally:
                        nursery.cancel_scope.cancel()
            finally:
                with trio.CancelScope(shield=True):
                    _kill_group(process)
                    with trio.move_on_after(5):
                        await process.wait()


def _kill_group(process: trio.Process) -> None:
    """Chromium forks helpers (renderer, zygote): end the whole process group we started."""
    if process.returncode is not None:
        return
    with suppress(ProcessLookupError):
        os.killpg(process.pid, 9)
