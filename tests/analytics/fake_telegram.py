"""A small stand-in for the Telegram Bot API, on a free 127.0.0.1 port (Telegram is not reachable here).

It implements the methods Lorong calls, with the answers of the Bot API reference
(core.telegram.org/bots/api, "Making requests"): every call is ``POST /bot<token>/<method>`` with a
JSON body, answered ``{"ok": true, "result": ...}`` or ``{"ok": false, "error_code": ...,
"description": ..., "parameters": {"retry_after": ...}}``.

- An unknown token gets 401 ``Unauthorized``; an unknown method 404 ``Not Found``.
- ``sendMessage`` ``{chat_id, text, reply_markup?}``: 400 ``Bad Request: chat not found`` for a chat
  the bot is not in, 400 ``Bad Request: message text is empty``, 400 ``Bad Request:
  BUTTON_DATA_INVALID`` for callback data over 64 bytes; answers the ``Message``.
- ``getUpdates`` ``{offset?, timeout?, allowed_updates?}``: updates with ``update_id >= offset``;
  an offset confirms (drops) the earlier ones. Long polling: with no update it waits up to
  ``timeout`` s (at most 50, as Telegram) for one, then answers ``[]``.
- ``answerCallbackQuery`` ``{callback_query_id, text?, show_alert?}``: 400 ``Bad Request: query is
  too old and response timeout expired or query ID is invalid`` for an unknown or answered query.

Test hooks: :attr:`FakeTelegram.failures` (answers given instead of the next calls: ``(status,
retry_after or None)``), :meth:`press` and :meth:`say` (a user presses a button / writes in a
chat), :attr:`calls` (every call with its time).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOKEN = "123456:test-token"


@dataclass
class FakeTelegram:
    """State of the fake Bot API; :meth:`start` serves it."""

    chats: set[int] = field(default_factory=set)
    messages: list[dict[str, Any]] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)
    answers: list[dict[str, Any]] = field(default_factory=list)
    failures: list[tuple[int, int | None]] = field(default_factory=list)
    calls: list[tuple[float, str, dict[str, Any]]] = field(default_factory=list)
    _open_queries: set[str] = field(default_factory=set)
    _next_update: int = 1000
    _next_message: int = 1
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Condition = field(default_factory=threading.Condition)  # notified on every new update

    @property
    def url(self) -> str:
        """Base URL (``telegram_api_url``)."""
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FakeTelegram:
        """Serve on a free loopback port in a daemon thread."""
        fake = self

        class Handler(_Handler):
            state = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def press(self, chat_id: int, data: str, user: str = "budi", user_id: int = 42,
              message_id: int = 1) -> str:
        """A user presses an inline button with ``data`` under a message in ``chat_id``; the query id."""
        with self._lock:
            self._next_update += 1
            qid = f"q{self._next_update}"
            self._open_queries.add(qid)
            self.updates.append({"update_id": self._next_update, "callback_query": {
                "id": qid, "from": {"id": user_id, "is_bot": False, "first_name": user.title(), "username": user},
                "message": {"message_id": message_id, "date": int(time.time()), "chat": {"id": chat_id}},
                "chat_instance": str(chat_id), "data": data}})
            self._lock.notify_all()
            return qid

    def say(self, chat_id: int, text: str) -> None:
        """A user writes ``text`` in ``chat_id``."""
        with self._lock:
            self._next_update += 1
            self.updates.append({"update_id": self._next_update, "message": {
                "message_id": 999, "date": int(time.time()), "chat": {"id": chat_id},
                "from": {"id": 42, "is_bot": False, "first_name": "Budi"}, "text": text}})
            self._lock.notify_all()

    def sent_to(self, chat_id: int) -> list[dict[str, Any]]:
        """Messages sent to one chat, in order."""
        return [m for m in self.messages if m["chat_id"] == chat_id]

    def handle(self, token: str, method: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Answer one call: ``(HTTP status, JSON body)``."""
        with self._lock:
            self.calls.append((time.monotonic(), method, body))
            if token != TOKEN:
                return _error(401, "Unauthorized")
            if self.failures:
                status, retry_after = self.failures.pop(0)
                desc = f"Too Many Requests: retry after {retry_after}" if status == 429 else "Internal Server Error"
                return _error(status, desc if status >= 429 else "Bad Request", retry_after)
            if method == "sendMessage":
                return self._send(body)
            if method == "getUpdates":
                offset = body.get("offset")
                if offset is not None:
                    self.updates = [u for u in self.updates if u["update_id"] >= offset]
                deadline = time.monotonic() + min(float(body.get("timeout") or 0), 50.0)
                while not self.updates and (left := deadline - time.monotonic()) > 0:
                    self._lock.wait(left)  # releases the lock: presses and other calls go on
                return 200, {"ok": True, "result": list(self.updates)}
            if method == "answerCallbackQuery":
                qid = body.get("callback_query_id")
                if qid not in self._open_queries:
                    return _error(400, "Bad Request: query is too old and response timeout expired or query ID is "
                                       "invalid")
                self._open_queries.discard(qid)
                self.answers.append(body)
                return 200, {"ok": True, "result": True}
            return _error(404, "Not Found")

    def _send(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if body.get("chat_id") not in self.chats:
            return _error(400, "Bad Request: chat not found")
        if not str(body.get("text") or "").strip():
            return _error(400, "Bad Request: message text is empty")
        for row in (body.get("reply_markup") or {}).get("inline_keyboard", []):
            for button in row:
                if not button.get("text") or len(str(button.get("callback_data", "")).encode()) > 64:
                    return _error(400, "Bad Request: BUTTON_DATA_INVALID")
        msg = {"message_id": self._next_message, "chat_id": body["chat_id"], "text": body["text"],
               "reply_markup": body.get("reply_markup")}
        self._next_message += 1
        self.messages.append(msg)
        return 200, {"ok": True, "result": {"message_id": msg["message_id"], "date": int(time.time()),
                                            "chat": {"id": body["chat_id"]}, "text": body["text"]}}


def _error(code: int, description: str, retry_after: int | None = None) -> tuple[int, dict[str, Any]]:
    body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
    if retry_after is not None:
        body["parameters"] = {"retry_after": retry_after}
    return code, body


class _Handler(BaseHTTPRequestHandler):
    state: FakeTelegram

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_POST(self) -> None:
        parts = self.path.strip("/").split("/")
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            body = None
        if len(parts) != 2 or not parts[0].startswith("bot") or not isinstance(body, dict):
            status, answer = _error(404 if isinstance(body, dict) else 400, "Not Found")
        else:
            status, answer = self.state.handle(parts[0][3:], parts[1], body)
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
