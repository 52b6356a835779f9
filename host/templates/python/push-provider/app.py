"""{{crate}}: a push provider guest for softswitch, in Python.

World `{{world_id}}` (the contract is in `wit/`). A push guest only
translates: the switch asks it for the HTTP request(s) that wake one device
for one notification (incoming call, missed call, text, voicemail ...),
performs them itself (only to the hosts the operator allowed), and hands each
answer back. The outbox, retries and every signing key stay in the switch; a
guest that needs a signed token asks the `credentials` import for one by the
key's name (this one does not).

This one POSTs every notification as JSON to one webhook (an operator's own
push gateway):

    POST <url>
    Authorization: <authorization>          (when configured)
    Content-Type: application/json

    {"kind": "incoming-call", "login": "alice", "token": "<device token>",
     "app": "...", "sandbox": false, "voip": true, "from": "bob", "title": "Bob",
     "excerpt": "", "badge": 2, "ts": 1700000000, "id": "...", "call_id": "..."}

Answers: 2xx is delivered, 404 and 410 mean the token is no longer valid (the
switch deletes it), 429 and 5xx are retried after `Retry-After` (else 10 s),
anything else fails.

Configuration values (`config = { ... }` of `[push.providers.<name>]`):
`url` (required), `authorization` (the value of an `Authorization` header,
none by default).
"""

import json
from typing import List, Optional, Tuple

import wit_world
from componentize_py_types import Err
from wit_world.imports.types import (
    Device,
    Error_Config,
    Header,
    HttpRequest,
    HttpResponse,
    Notification,
    NotificationKind,
    Outcome,
    Outcome_Delivered,
    Outcome_Failed,
    Outcome_RetryAfter,
    Outcome_TokenInvalid,
)

Config = List[Tuple[str, str]]

# Seconds before a retry when the service gives no `Retry-After`.
DEFAULT_RETRY_SECS = 10

# The kinds as the WIT spells them.
KIND_NAMES = {
    NotificationKind.INCOMING_CALL: "incoming-call",
    NotificationKind.MISSED_CALL: "missed-call",
    NotificationKind.TEXT: "text",
    NotificationKind.PICTURE: "picture",
    NotificationKind.VIDEO: "video",
    NotificationKind.AUDIO: "audio",
    NotificationKind.FILE: "file",
    NotificationKind.VOICEMAIL: "voicemail",
}


def config_value(config: Config, key: str) -> Optional[str]:
    """The operator's value for `key`, or None when it is missing or empty."""
    for k, v in config:
        if k == key and v:
            return v
    return None


def title(n: Notification) -> str:
    """The name an alert should show: the user's own address-book name for
    the other party, else their display name, else their login."""
    return n.from_book_name or n.from_display_name or n.from_login


def format_request(n: Notification, device: Device, config: Config) -> List[HttpRequest]:
    url = config_value(config, "url")
    if url is None or not url.startswith(("https://", "http://")):
        # The switch logs which key is wrong and fails the notification.
        raise Err(Error_Config("url"))
    body = {
        "kind": KIND_NAMES[n.kind],
        "login": device.login,
        "token": device.token,
        "app": device.app,
        "sandbox": device.sandbox,
        "voip": device.voip,
        "from": n.from_login,
        "title": title(n),
        "excerpt": n.excerpt,
        "badge": n.badge,
        "ts": n.timestamp,
        "id": n.id,
        "call_id": n.call_id,
    }
    headers = [Header("Content-Type", "application/json")]
    authorization = config_value(config, "authorization")
    if authorization:
        headers.append(Header("Authorization", authorization))
    return [
        HttpRequest(
            method="POST",
            url=url,
            headers=headers,
            body=json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8"),
        )
    ]


def parse_response(response: HttpResponse) -> Outcome:
    text = response.body.decode("utf-8", "replace").strip()
    if 200 <= response.status < 300:
        return Outcome_Delivered(None)
    if response.status in (404, 410):
        return Outcome_TokenInvalid(f"HTTP {response.status} {text}")
    if response.status == 429 or 500 <= response.status < 600:
        for h in response.headers:
            if h.name.lower() == "retry-after" and h.value.strip().isdigit():
                return Outcome_RetryAfter(int(h.value.strip()))
        return Outcome_RetryAfter(DEFAULT_RETRY_SECS)
    return Outcome_Failed(f"HTTP {response.status} {text}")


class WitWorld(wit_world.WitWorld):
    def format(self, notification: Notification, device: Device, config: Config) -> List[HttpRequest]:
        return format_request(notification, device, config)

    def parse_response(self, response: HttpResponse, config: Config) -> Outcome:
        return parse_response(response)
