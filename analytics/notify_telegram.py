"""Alert changes to Telegram chats, and the chats' "On it" / "Emptied" buttons acting on the alerts.

Telegram Bot API over HTTPS (core.telegram.org/bots/api), plain httpx: every call is
``POST <telegram_api_url>/bot<token>/<method>`` with a JSON body; the answer is ``{"ok": true,
"result": ...}`` or ``{"ok": false, "error_code": ..., "description": ..., "parameters":
{"retry_after": <s>}}``. Methods used: ``sendMessage`` (text and an inline keyboard),
``getUpdates`` (long polling), ``answerCallbackQuery``.

- **Out** (:class:`TelegramChannel`, one outbox channel ``telegram:<name>`` per linked chat, see
  :class:`lorong.core.settings.TelegramChat`): one message per alert change in the chat's language,
  written by :func:`analytics.telegram_text.message_text` (the catalogue's words, the place and a
  map link); a chat that may act gets buttons "On it" (acknowledge) and "Emptied" (clear with the
  reason ``emptied``; "Resolved" for alerts that are not about a full bin) while the alert is active.
- **Retries** (:class:`BotApi`): 429 and 5xx are tried again after the ``retry_after`` the answer
  gives (Bot API "Responses": ``parameters.retry_after``, the seconds to wait after flood control),
  or 1, 2, 4 ... s without one, at most ``attempts`` tries (tenacity). A ``retry_after`` longer
  than ``max_wait_s``, or the last failed try, raises :class:`RetryLater`: the outbox keeps the
  row pending and waits at least ``retry_after``. 400 and 403 (chat not found, bot blocked or
  kicked) refuse the row (:class:`BotRefused`); 401 and 404 (a wrong token or URL) keep every
  row pending until the setting is mended.
- **In** (:class:`TelegramUpdates`): callback queries from the buttons act through the same alert
  book (:class:`analytics.alerts.AlertBook`), as ``telegram:<chat name>/<user>``, only for a chat
  linked with ``can_act`` whose alerts (kecamatan, types) include the alert; any other press is
  answered "not allowed" and changes nothing. Every query is answered (``answerCallbackQuery``).
  ``/chatid`` in any chat makes the bot tell that chat's id, to link it.

Telegram has no idempotency key: at-least-once delivery means a chat may, rarely, see a message
twice (the outbox's resend after a crash between Telegram's answer and the commit).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from sqlalchemy.orm import Session, sessionmaker
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from analytics.alerts import AlertBook, AlertNotFound, AlertStateError, Notifier, snapshot
from analytics.outbox import DeliveryRefused, Outbox, OutboxMessage, Router
from analytics.telegram_text import Locate, clear_words, message_text, say
from lorong.core.model import utcnow
from lorong.core.settings import TelegramChat

log = logging.getLogger(__name__)

class RetryLater(ConnectionError):
    """Telegram answered 429 or 5xx (or could not be reached): try again after ``retry_after_s``.

    Attributes:
        retry_after_s: the ``parameters.retry_after`` of the answer (s), if any.
    """

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class BotRefused(DeliveryRefused):
    """Telegram refused the call for good (400, 403: chat not found, bot blocked or kicked)."""


class BotApi:
    """A Telegram Bot API client (httpx) with retries after ``retry_after`` (tenacity).

    Args:
        token: the bot's token (never shown in errors or logs).
        base_url: API root, ``https://api.telegram.org`` (tests: a local server).
        timeout_s: per-request timeout (s); ``getUpdates`` adds its long-poll timeout.
        attempts: tries per call for 429 and 5xx answers (the first included).
        max_wait_s: longest wait between two tries (s); a longer ``retry_after`` is not waited.
        sleep: how a wait is spent (``time.sleep``; tests record the waits and sleep them).
    """

    def __init__(self, token: str, base_url: str = "https://api.telegram.org", timeout_s: float = 10.0,
                 attempts: int = 3, max_wait_s: float = 30.0, sleep: Callable[[float], None] = time.sleep) -> None:
        self._token = token
        self.base_url, self.timeout_s, self.max_wait_s = base_url.rstrip("/"), timeout_s, max_wait_s
        self._http = httpx.Client(timeout=timeout_s)
        self._retrying = Retrying(stop=stop_after_attempt(attempts), wait=self._wait, sleep=sleep, reraise=True,
                                  retry=retry_if_exception(self._worth_waiting))

    def _worth_waiting(self, exc: BaseException) -> bool:
        return isinstance(exc, RetryLater) and (exc.retry_after_s or 0) <= self.max_wait_s

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        if isinstance(exc, RetryLater) and exc.retry_after_s is not None:
            return float(exc.retry_after_s)
        return float(min(self.max_wait_s, 2.0 ** (state.attempt_number - 1)))

    def _clean(self, text: str) -> str:
        return text.replace(self._token, "<token>")

    def _once(self, method: str, params: Mapping[str, Any], timeout_s: float) -> Any:
        try:
            resp = self._http.post(f"{self.base_url}/bot{self._token}/{method}", json=dict(params), timeout=timeout_s)
        except httpx.HTTPError as exc:
            raise RetryLater(f"telegram {method}: {type(exc).__name__}: {self._clean(str(exc))}") from None
        try:
            body = resp.json()
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        if resp.status_code == 200 and body.get("ok") is True:
            return body.get("result")
        code = int(body.get("error_code") or resp.status_code)
        desc = self._clean(str(body.get("description") or resp.text[:200]))
        detail = f"telegram {method}: {code} {desc}".rstrip()
        extra = body.get("parameters")
        retry_after = extra.get("retry_after") if isinstance(extra, dict) else None
        if not isinstance(retry_after, (int, float)):
            retry_after = None
        if code == 429 or code >= 500:
            raise RetryLater(detail, retry_after)
        if code in (401, 404):
            raise ConnectionError(f"{detail} (check LORONG_NOTIFY__TELEGRAM_TOKEN and TELEGRAM_API_URL)")
        raise BotRefused(detail)

    def call(self, method: str, timeout_s: float | None = None, **params: Any) -> Any:
        """Call a Bot API method; its ``result``.

        Args:
            method: e.g. ``sendMessage``.
            timeout_s: request timeout (default ``timeout_s`` of the client).
            params: the method's parameters (JSON-ready).

        Raises:
            RetryLater: 429 or 5xx after every try (or a ``retry_after`` over ``max_wait_s``),
                or Telegram could not be reached.
            BotRefused: 400 or 403.
            ConnectionError: 401 or 404 (token or URL wrong).
        """
        for attempt in self._retrying:
            with attempt:
                return self._once(method, params, timeout_s or self.timeout_s)
        raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()


def buttons(alert: Mapping[str, Any], chat: TelegramChat) -> dict[str, Any] | None:
    """The inline keyboard of a message (``reply_markup``): "On it" while unacknowledged and
    "Emptied"/"Resolved" while active, in the chat's language, for a chat that may act; else ``None``.

    Callback data (at most 64 bytes, Bot API ``InlineKeyboardButton``): ``ack:<alert id>``, ``clr:<alert id>``.
    """
    if not chat.can_act or alert.get("status") != "active":
        return None
    row = []
    if not alert.get("acknowledged"):
        row.append({"text": say(chat.language, "on_it"), "callback_data": f"ack:{alert['id']}"})
    row.append({"text": clear_words(str(alert.get("type")), chat.language)[0], "callback_data": f"clr:{alert['id']}"})
    return {"inline_keyboard": [row]}


class TelegramChannel:
    """Outbox channel ``telegram:<chat name>`` (:class:`analytics.outbox.Channel`): one ``sendMessage``
    per row to the linked chat.

    Args:
        api: the shared Bot API client (closed by :meth:`close`; closing twice is harmless).
        chat: the linked chat.
        tz: the city's time zone (message times).
        locate: the place of a device (:func:`analytics.telegram_text.registry_places`); without it
            messages name the kecamatan only.
    """

    def __init__(self, api: BotApi, chat: TelegramChat, tz: ZoneInfo, locate: Locate | None = None) -> None:
        self.api, self.chat, self.tz, self.locate = api, chat, tz, locate

    def send(self, message: OutboxMessage) -> None:
        """Send one row as a message.

        Raises:
            DeliveryRefused: the payload is no alert notification, or Telegram refused (400, 403).
            ConnectionError: try again later (429, 5xx, network, wrong token); :class:`RetryLater`
                carries Telegram's ``retry_after``.
        """
        try:
            body = message.body
            alert, action = body["alert"], str(body["action"])
            place = self.locate(str(alert["device_id"])) if self.locate is not None else None
            text = message_text(action, alert, self.tz, self.chat.language, place)
        except (ValueError, KeyError, TypeError) as exc:
            raise DeliveryRefused(f"notification {message.id}: bad payload: {exc!r}") from exc
        params: dict[str, Any] = {"chat_id": self.chat.chat_id, "text": text}
        if (markup := buttons(alert, self.chat)) is not None:
            params["reply_markup"] = markup
        self.api.call("sendMessage", **params)

    def __repr__(self) -> str:
        return f"TelegramChannel({self.chat.name!r})"

    def close(self) -> None:
        """Close the shared client."""
        self.api.close()


@dataclass(frozen=True, slots=True)
class Handled:
    """What :meth:`TelegramUpdates.poll` did with one update.

    Attributes:
        update_id: Telegram's update id.
        outcome: ``acknowledged``, ``cleared``, ``refused``, ``rejected`` (alert missing or state
            wrong), ``chat_id`` (answered ``/chatid``) or ``ignored``.
        alert_id: the alert acted on, if any.
        detail: the text answered to the user.
    """

    update_id: int
    outcome: str
    alert_id: int | None = None
    detail: str = ""


class TelegramUpdates:
    """Reads the bot's updates (``getUpdates``) and acts on button presses (see the module docstring).

    Args:
        api: the Bot API client.
        sessions: SQL session factory.
        chats: the linked chats.
        router: the outbox router for the changes the buttons make (every linked chat hears of them).
        outbox: dispatched after each change, so the chats hear of it at once (optional).
        clock: the time of the changes (tz-aware UTC).
        notifiers: called once per change after its commit, best effort, as after an API action
            (the InfluxDB ``alert_event`` log, :class:`analytics.notify.InfluxAlertLog`).
    """

    def __init__(self, api: BotApi, sessions: sessionmaker[Session], chats: Sequence[TelegramChat],
                 router: Router, outbox: Outbox | None = None, clock: Callable[[], datetime] = utcnow,
                 notifiers: Sequence[Notifier] = ()) -> None:
        self.api, self.sessions, self.router, self.outbox, self.clock = api, sessions, router, outbox, clock
        self.notifiers = list(notifiers)
        self.chats = {c.chat_id: c for c in chats}
        self.offset: int | None = None  # confirmed updates are not sent again (Bot API getUpdates)

    def poll(self, timeout_s: int = 0) -> list[Handled]:
        """One ``getUpdates`` (long poll up to ``timeout_s``) and what was done with each update.

        An update is confirmed by the next call's ``offset``; if the process dies first, Telegram
        sends it again and the alert book refuses the repeated action (already acknowledged or
        cleared), so nothing happens twice.

        Raises:
            RetryLater, ConnectionError, BotRefused: ``getUpdates`` failed (nothing was handled).
        """
        params: dict[str, Any] = {"timeout": timeout_s, "allowed_updates": ["callback_query", "message"]}
        if self.offset is not None:
            params["offset"] = self.offset
        updates = self.api.call("getUpdates", timeout_s=self.api.timeout_s + timeout_s, **params) or []
        done = []
        for update in updates:
            self.offset = max(self.offset or 0, int(update["update_id"]) + 1)
            try:
                done.append(self._handle(update))
            except (RetryLater, ConnectionError, BotRefused) as exc:  # the answer failed: the action stands
                log.warning("telegram update %s: answer not sent: %s", update.get("update_id"), exc)
        return done

    def _handle(self, update: Mapping[str, Any]) -> Handled:
        uid = int(update["update_id"])
        if (query := update.get("callback_query")) is not None:
            return self._press(uid, query)
        message = update.get("message") or {}
        if str(message.get("text") or "").split("@")[0].strip() in ("/chatid", "/start"):
            chat_id = message["chat"]["id"]
            linked = self.chats.get(chat_id)
            text = (f"This chat's id is {chat_id}; it is linked as {linked.name!r}." if linked else
                    f"This chat's id is {chat_id}. Link it in LORONG_NOTIFY__TELEGRAM_CHATS, e.g. "
                    f'[{{"name": "crew-1", "chat_id": {chat_id}, "kecamatan": ["Wajo"], "can_act": true}}]')
            self.api.call("sendMessage", chat_id=chat_id, text=text)
            return Handled(uid, "chat_id", detail=text)
        return Handled(uid, "ignored")

    def _answer(self, uid: int, query: Mapping[str, Any], outcome: str, alert_id: int | None, text: str) -> Handled:
        self.api.call("answerCallbackQuery", callback_query_id=query["id"], text=text,
                      show_alert=outcome in ("refused", "rejected"))
        return Handled(uid, outcome, alert_id, text)

    def _press(self, uid: int, query: Mapping[str, Any]) -> Handled:
        kind, _, sid = str(query.get("data") or "").partition(":")
        chat = self.chats.get((query.get("message") or {}).get("chat", {}).get("id"))
        lang = chat.language if chat is not None else "id"
        if kind not in ("ack", "clr") or not sid.isdigit():
            return self._answer(uid, query, "rejected", None, say(lang, "unknown_button"))
        alert_id = int(sid)
        if chat is None or not chat.can_act:
            return self._answer(uid, query, "refused", alert_id, say(lang, "chat_may_not"))
        user = query.get("from") or {}
        actor = f"telegram:{chat.name}/{user.get('username') or user.get('id')}"[:64]
        now = self.clock()
        try:
            with self.sessions.begin() as s:
                book = AlertBook(s, self.notifiers, channels=self.router, clock=lambda: now)
                row = book.get(alert_id)
                if not chat.covers(snapshot(row)):
                    outcome = "refused"
                    text = say(lang, "alert_may_not", id=alert_id, type=row.type, kecamatan=row.kecamatan)
                elif kind == "ack":
                    book.acknowledge(alert_id, now, actor)
                    outcome, text = "acknowledged", say(lang, "done_ack", id=alert_id)
                else:
                    label, reason = clear_words(row.type, lang)
                    book.clear(alert_id, now, actor, reason)
                    outcome, text = "cleared", say(lang, "done_clear", id=alert_id, how=label)
        except (AlertNotFound, AlertStateError) as exc:
            return self._answer(uid, query, "rejected", alert_id, str(exc))
        if outcome == "refused":
            return self._answer(uid, query, outcome, alert_id, text)
        log.info("telegram: %s %s alert %d", actor, outcome, alert_id)
        book.publish()  # committed: the alert_event annotation, as after an API action
        if self.outbox is not None:
            try:
                self.outbox.dispatch(now=now)
            except Exception:  # queued: the scheduler's tick sends it
                log.exception("notifications of a Telegram action not dispatched (they stay queued)")
        return self._answer(uid, query, outcome, alert_id, text)

    def run(self, stop: threading.Event, timeout_s: int = 25) -> None:
        """Poll until ``stop`` is set; after a failed poll wait 5 s (or Telegram's ``retry_after``)."""
        failing = False
        while not stop.is_set():
            try:
                self.poll(timeout_s)
                if failing:
                    log.info("telegram updates flowing again")
                failing = False
            except Exception as exc:
                if not failing:
                    log.error("telegram getUpdates failing (buttons wait): %s", exc)
                failing = True
                stop.wait(float(getattr(exc, "retry_after_s", None) or 5.0))
