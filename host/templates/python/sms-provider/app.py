"""{{crate}}: an SMS provider guest for softswitch, in Python.

World `{{world_id}}` (the contract is in `wit/`). The switch asks the guest
for the HTTP request that sends a message, performs it itself, and hands
back the vendor's answer and the vendor's delivery reports to interpret.

This template speaks a simple JSON API; change the three methods to your
vendor's:

- send: `POST <url>` with `Authorization: Bearer <api_key>` and a body
  `{"to", "from", "text", "reference", "unicode"}` (plus `"callback"` when
  the switch has a public URL for reports); `unicode` comes from the
  message's `encoding`, which the switch works out from the text (GSM
  7-bit or UCS-2: a text sent as Unicode when it need not be costs twice
  the parts);
- answer: `2xx {"id": ...}` is accepted, 429 and 5xx are retried after
  `Retry-After` (else 30 s), anything else is refused;
- report: a POST of `{"id", "status"}` with status `delivered`, `failed` or
  anything else (pending).

Configuration values (`config` in softswitch.toml): `url`, `api_key`,
`from`; `callback_url` is added by the switch.
"""

import json
from typing import List, Optional, Tuple

import wit_world
from componentize_py_types import Err
from wit_world.imports.types import (
    DeliveryState,
    Encoding,
    Error_Config,
    Error_Invalid,
    Header,
    HttpRequest,
    HttpResponse,
    Message,
    Report,
    SendResult,
    SendResult_Accepted,
    SendResult_Rejected,
    SendResult_RetryAfter,
)

Config = List[Tuple[str, str]]

DEFAULT_RETRY_SECS = 30


def config_value(config: Config, key: str) -> Optional[str]:
    """The operator's value for `key`, or None when it is missing or empty."""
    for k, v in config:
        if k == key and v:
            return v
    return None


def required(config: Config, key: str) -> str:
    value = config_value(config, key)
    if value is None:
        # The switch logs which key is missing and fails the message.
        raise Err(Error_Config(key))
    return value


def header(headers: List[Header], name: str) -> Optional[str]:
    for h in headers:
        if h.name.lower() == name.lower():
            return h.value
    return None


class WitWorld(wit_world.WitWorld):
    def build_send(self, message: Message, config: Config) -> HttpRequest:
        payload = {
            "to": message.to,
            "from": message.sender or required(config, "from"),
            "text": message.text,
            "reference": message.reference,
            "unicode": message.encoding == Encoding.UCS2,
        }
        callback = config_value(config, "callback_url")
        if callback:
            payload["callback"] = callback
        return HttpRequest(
            method="POST",
            url=required(config, "url"),
            headers=[
                Header("Authorization", "Bearer " + required(config, "api_key")),
                Header("Content-Type", "application/json"),
            ],
            body=json.dumps(payload, ensure_ascii=False).encode("utf-8"),
        )

    def parse_send_response(self, response: HttpResponse, config: Config) -> SendResult:
        if response.status == 429 or response.status >= 500:
            value = (header(response.headers, "retry-after") or "").strip()
            return SendResult_RetryAfter(int(value) if value.isdigit() else DEFAULT_RETRY_SECS)
        if 200 <= response.status < 300:
            try:
                message_id = json.loads(response.body).get("id")
            except (ValueError, AttributeError):
                message_id = None
            if isinstance(message_id, str) and message_id:
                return SendResult_Accepted(message_id)
        return SendResult_Rejected(f"HTTP {response.status}: {response.body[:200].decode('utf-8', 'replace')}")

    def parse_delivery_report(self, request: HttpRequest, config: Config) -> Report:
        try:
            report = json.loads(request.body)
        except ValueError as e:
            raise Err(Error_Invalid(f"report is not JSON: {e}"))
        if not isinstance(report, dict) or not report.get("id"):
            raise Err(Error_Invalid("report without id"))
        status = str(report.get("status", ""))
        state = {
            "delivered": DeliveryState.DELIVERED,
            "failed": DeliveryState.FAILED,
        }.get(status, DeliveryState.PENDING)
        return Report(provider_id=str(report["id"]), state=state, detail=status or None)
