"""SMS provider guest for the MessageBird (Bird) SMS API, in Python.

Built into a component of the world `softswitch:sms-provider/provider@0.1.0`
with componentize-py (`scripts/build-guests.sh` does it). It stays on 0.1.0
on purpose: the switch serves it through its 0.1.0 shim, which shows an old
guest keeps working (README, "Versions of the WIT"); `datacoding: auto` lets
MessageBird pick the coding that 0.2.0's `encoding` would give.

    componentize-py -d wit/sms-provider/0.1.0 -w provider componentize app \
        -p guests/sms-providers/messagebird-py -o sms_messagebird_py.wasm

Send: `POST https://rest.messagebird.com/messages` with
`Authorization: AccessKey <key>` and a JSON body (`recipients`, `originator`,
`body`, `reference`, `datacoding: auto`, and `reportUrl` when the host has a
public URL for reports). A 201 answer carries the message `id`; errors come
as `{"errors": [{"code": .., "description": ..}]}`. Status reports are GET
requests to the report URL with `id`, `reference`, `recipient`, `status`
(`scheduled`, `sent`, `buffered`, `delivered`, `expired`,
`delivery_failed`), `statusReason` and `statusErrorCode`.

Configuration: `access_key`, `originator` (required unless the message has a
sender); `url` overrides the endpoint (tests point it at a local stand-in);
`callback_url` is filled in by the host.
"""

import json
from typing import List, Optional, Tuple
from urllib.parse import parse_qsl, urlsplit

import wit_world
from componentize_py_types import Err
from wit_world.imports.types import (
    DeliveryState,
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

ENDPOINT = "https://rest.messagebird.com/messages"
# MessageBird answers 429 without a Retry-After when an account sends too fast.
DEFAULT_RETRY_SECS = 30
# Error codes that are the vendor's trouble rather than the request's: retried.
RETRY_CODES = {98, 99}  # "throttled", "internal error"

Config = List[Tuple[str, str]]

STATES = {
    "delivered": DeliveryState.DELIVERED,
    "expired": DeliveryState.FAILED,
    "delivery_failed": DeliveryState.FAILED,
}


def config_value(config: Config, key: str) -> Optional[str]:
    for k, v in config:
        if k == key and v:
            return v
    return None


def required(config: Config, key: str) -> str:
    value = config_value(config, key)
    if value is None:
        raise Err(Error_Config(key))
    return value


def header(headers: List[Header], name: str) -> Optional[str]:
    for h in headers:
        if h.name.lower() == name.lower():
            return h.value
    return None


def retry_after(headers: List[Header]) -> int:
    value = header(headers, "retry-after") or ""
    return int(value) if value.strip().isdigit() else DEFAULT_RETRY_SECS


def first_error(body: bytes) -> Tuple[Optional[int], str]:
    """The code and description of the first entry of `errors`, if any."""
    try:
        errors = json.loads(body).get("errors") or []
        first = errors[0]
        return first.get("code"), str(first.get("description", ""))
    except (ValueError, AttributeError, IndexError, TypeError):
        return None, ""


class WitWorld(wit_world.WitWorld):
    def build_send(self, message: Message, config: Config) -> HttpRequest:
        key = required(config, "access_key")
        originator = message.sender or required(config, "originator")
        payload = {
            # MessageBird takes MSISDNs without the leading `+`.
            "recipients": [message.to.lstrip("+")],
            "originator": originator,
            "body": message.text,
            "reference": message.reference,
            # Unicode text is sent as such instead of being mangled to GSM-7.
            "datacoding": "auto",
        }
        callback = config_value(config, "callback_url")
        if callback:
            payload["reportUrl"] = callback
        return HttpRequest(
            method="POST",
            url=config_value(config, "url") or ENDPOINT,
            headers=[
                Header("Authorization", "AccessKey " + key),
                Header("Content-Type", "application/json"),
            ],
            body=json.dumps(payload, ensure_ascii=False).encode("utf-8"),
        )

    def parse_send_response(self, response: HttpResponse, config: Config) -> SendResult:
        if response.status == 429 or response.status >= 500:
            return SendResult_RetryAfter(retry_after(response.headers))
        if response.status in (200, 201):
            try:
                message_id = json.loads(response.body).get("id")
            except (ValueError, AttributeError):
                message_id = None
            if isinstance(message_id, str) and message_id:
                return SendResult_Accepted(message_id)
            return SendResult_Rejected(f"HTTP {response.status}: no message id in the answer")
        code, description = first_error(response.body)
        if code in RETRY_CODES:
            return SendResult_RetryAfter(retry_after(response.headers))
        if code is None:
            return SendResult_Rejected(f"HTTP {response.status}")
        return SendResult_Rejected(f"HTTP {response.status}: error {code}: {description}")

    def parse_delivery_report(self, request: HttpRequest, config: Config) -> Report:
        fields = dict(parse_qsl(urlsplit(request.url).query))
        content_type = header(request.headers, "content-type") or ""
        if request.body:
            if "json" in content_type:
                try:
                    body = json.loads(request.body)
                except ValueError as e:
                    raise Err(Error_Invalid(f"report is not JSON: {e}"))
                if isinstance(body, dict):
                    fields.update({k: str(v) for k, v in body.items() if v is not None})
            else:
                fields.update(dict(parse_qsl(request.body.decode("utf-8", "replace"))))
        message_id = fields.get("id")
        if not message_id:
            raise Err(Error_Invalid("report without id"))
        status = fields.get("status")
        if not status:
            raise Err(Error_Invalid("report without status"))
        detail = status
        reason = fields.get("statusReason")
        if reason:
            detail += f" ({reason}"
            code = fields.get("statusErrorCode")
            detail += f", error {code})" if code else ")"
        return Report(
            provider_id=message_id,
            state=STATES.get(status, DeliveryState.PENDING),
            detail=detail,
        )
