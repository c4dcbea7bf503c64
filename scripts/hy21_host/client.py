"""A small client for ComfyUI's HTTP and websocket API: queue API-format prompts and collect results."""

from __future__ import annotations

import json
import struct
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import websocket

EventCallback = Callable[[dict[str, Any]], None]
TERMINAL_EVENTS = ("execution_success", "execution_error", "execution_interrupted")


TEXT_EVENT = 3  # ComfyUI's binary event type for a node's progress text


def progress_text(frame: bytes) -> dict[str, Any] | None:
    """A binary websocket frame as a ``progress_text`` event (``data``: node, text), or None for previews."""
    if len(frame) < 8 or struct.unpack(">I", frame[:4])[0] != TEXT_EVENT:
        return None
    (length,) = struct.unpack(">I", frame[4:8])
    node = frame[8 : 8 + length].decode("utf-8")
    return {"type": "progress_text", "data": {"node": node, "text": frame[8 + length :].decode("utf-8")}}


class PromptRejectedError(Exception):
    """``POST /prompt`` answered 400: the graph failed validation before anything ran."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body
        self.error: dict[str, Any] = body.get("error") or {}
        self.node_errors: dict[str, Any] = body.get("node_errors") or {}
        super().__init__(self.describe())

    def messages(self) -> list[str]:
        """Every reason given, the prompt-level one first, as 'message: details' strings."""
        found = [f"{self.error.get('message', '')}: {self.error.get('details', '')}"]
        for node_id, info in self.node_errors.items():
            for err in info.get("errors", []):
                found.append(f"node {node_id} ({info.get('class_type')}): {err.get('message')}: {err.get('details')}")
        return found

    def describe(self) -> str:
        return "prompt rejected: " + " | ".join(self.messages())


@dataclass
class PromptResult:
    """What one queued prompt did: its status, the outputs of output nodes, and the error if it failed."""

    prompt_id: str
    status: str
    outputs: dict[str, Any] = field(default_factory=dict)
    error: dict[str, Any] | None = None
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "success"

    def raise_for_error(self) -> PromptResult:
        if not self.ok:
            detail = self.error or {}
            raise RuntimeError(
                f"prompt {self.prompt_id} ended with {self.status}: {detail.get('node_type')} "
                f"(node {detail.get('node_id')}): {detail.get('exception_type')}: {detail.get('exception_message')}"
            )
        return self


class ComfyClient:
    def __init__(self, url: str, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.client_id = uuid.uuid4().hex

    def _request(self, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=self.timeout) as resp:
            raw = resp.read()
        return json.loads(raw) if raw else None

    def object_info(self, node_class: str | None = None) -> dict[str, Any]:
        return self._request("/object_info" + (f"/{node_class}" if node_class else ""))

    def history(self, prompt_id: str) -> dict[str, Any] | None:
        return self._request(f"/history/{prompt_id}").get(prompt_id)

    def view(self, filename: str, subfolder: str = "", kind: str = "output") -> bytes:
        query = urllib.parse.urlencode({"filename": filename, "subfolder": subfolder, "type": kind})
        with urllib.request.urlopen(f"{self.url}/view?{query}", timeout=self.timeout) as resp:
            return resp.read()

    def interrupt(self) -> None:
        self._request("/interrupt", {})

    def free(self, unload_models: bool = True) -> None:
        self._request("/free", {"unload_models": unload_models, "free_memory": True})

    def queue(self, prompt: dict[str, Any]) -> str:
        """Post an API-format prompt; return its id or raise PromptRejectedError with ComfyUI's reasons."""
        try:
            answer = self._request("/prompt", {"prompt": prompt, "client_id": self.client_id})
        except urllib.error.HTTPError as exc:
            if exc.code == 400:
                raise PromptRejectedError(json.loads(exc.read() or b"{}")) from None
            raise
        return answer["prompt_id"]

    def run(
        self, prompt: dict[str, Any], timeout: float = 600.0, on_event: EventCallback | None = None
    ) -> PromptResult:
        """Queue a prompt and wait for it to finish, following the websocket and confirming via /history.

        ``on_event`` is called with every websocket event of this prompt as it arrives (e.g. to interrupt it).
        """
        ws_url = self.url.replace("http", "ws", 1) + f"/ws?clientId={self.client_id}"
        ws = websocket.create_connection(ws_url, timeout=self.timeout)
        try:
            prompt_id = self.queue(prompt)
            events = self._follow(ws, prompt_id, timeout, on_event)
        finally:
            ws.close()
        return self._result(prompt_id, events, timeout)

    def _follow(
        self, ws: websocket.WebSocket, prompt_id: str, timeout: float, on_event: EventCallback | None = None
    ) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        ws.settimeout(1.0)
        while time.monotonic() < deadline:
            try:
                raw = ws.recv()
            except websocket.WebSocketTimeoutException:
                if self.history(prompt_id):  # finished while we were not listening
                    return events
                continue
            if not isinstance(raw, str):  # binary frames: latent previews, and text a node shows on itself
                text = progress_text(raw)
                if text is not None:
                    events.append(text)
                continue
            event = json.loads(raw)
            data = event.get("data") or {}
            if data.get("prompt_id") != prompt_id:
                continue
            events.append(event)
            if on_event is not None:
                on_event(event)
            if event["type"] in TERMINAL_EVENTS:
                return events
            if event["type"] == "executing" and data.get("node") is None:
                return events
        raise TimeoutError(f"prompt {prompt_id} did not finish within {timeout:.0f} s")

    def _result(self, prompt_id: str, events: list[dict[str, Any]], timeout: float) -> PromptResult:
        deadline = time.monotonic() + min(timeout, 30.0)
        entry = self.history(prompt_id)
        while entry is None and time.monotonic() < deadline:
            time.sleep(0.1)
            entry = self.history(prompt_id)
        if entry is None:
            raise TimeoutError(f"prompt {prompt_id} finished but never reached /history")
        status = entry.get("status", {}).get("status_str", "unknown")
        messages = entry.get("status", {}).get("messages", [])
        error = next((e["data"] for e in events if e["type"] == "execution_error"), None)
        if error is None:
            for name, data in messages:
                if name == "execution_error":
                    error = data
        # /history also records the interruption, for when it answered before the websocket event arrived
        if any(e["type"] == "execution_interrupted" for e in events) or any(
            name == "execution_interrupted" for name, _ in messages
        ):
            status = "interrupted"
        return PromptResult(prompt_id, status, entry.get("outputs", {}), error, events)
