// {{crate}}: an SMS provider guest for softswitch, in JavaScript (world
// `{{world_id}}`, in `wit/`).
//
// A provider guest only translates: the switch asks it for the HTTP request
// that sends one SMS, performs the request itself (only to the hosts the
// operator allowed), hands the answer back, and passes on the vendor's
// delivery-report callbacks. Retries and back-off are the switch's.
//
// This one speaks to an imaginary JSON API:
//
//   POST <url>
//   Authorization: Bearer <api_key>
//   Content-Type: application/json
//
//   {"to": "+48600111222", "from": "Softswitch", "text": "...", "reference": "...",
//    "unicode": false, "callback_url": "..."}
//
// `unicode` comes from the message's `encoding`, which the switch works out
// from the text (GSM 7-bit or UCS-2): most vendors ask for it, and a text
// sent as Unicode when it need not be costs twice the parts.
//
// answered with `2xx {"id": "<message id>"}`; 429 and 5xx are retried after
// `Retry-After` (else 30 s), anything else is refused for good. Delivery
// reports come as `{"id": "...", "status": "delivered" | "failed" | ...}`.
//
// Configuration values (`config = { ... }` of `[sms.providers.<name>]`):
//   url           the vendor's send endpoint (required)
//   api_key       sent as `Authorization: Bearer <api_key>` (required)
//   from          sender when the switch gives none (`sms.sender`)
//   callback_url  where delivery reports go (set by the switch when
//                 `sms.callback_base_url` is set)
//
// A function whose WIT result is `result<T, error>` returns T, or throws the
// error (`{ tag: "config", val: "url" }`): the switch logs and counts it.

// Seconds before a retry when the vendor gives no `Retry-After`.
const DEFAULT_RETRY_SECS = 30;

// A configuration value (`config` is a list of [key, value]); an empty one
// counts as absent.
function value(config, key) {
  const found = config.find(([k]) => k === key);
  return found && found[1] ? found[1] : null;
}

function required(config, key) {
  const v = value(config, key);
  if (v === null) throw { tag: "config", val: key };
  return v;
}

function header(headers, name) {
  const found = headers.find((h) => h.name.toLowerCase() === name.toLowerCase());
  return found ? found.value : null;
}

const utf8 = (bytes) => new TextDecoder().decode(bytes);

// The request that sends `message`.
export function buildSend(message, config) {
  const url = required(config, "url");
  const apiKey = required(config, "api_key");
  if (!/^[0-9]+$/.test(message.to)) {
    throw { tag: "invalid", val: `recipient ${JSON.stringify(message.to)} is not a number` };
  }
  const body = {
    to: `+${message.to}`,
    from: message.sender || value(config, "from") || "",
    text: message.text,
    reference: message.reference,
    unicode: message.encoding === "ucs2",
  };
  const callback = value(config, "callback_url");
  if (callback) body.callback_url = callback;
  return {
    method: "POST",
    url,
    headers: [
      { name: "Authorization", value: `Bearer ${apiKey}` },
      { name: "Content-Type", value: "application/json" },
    ],
    body: new TextEncoder().encode(JSON.stringify(body)),
  };
}

// What the vendor's answer means.
export function parseSendResponse(response, _config) {
  const text = utf8(response.body).trim();
  const { status } = response;
  if (status >= 200 && status < 300) {
    let id = null;
    try {
      id = JSON.parse(text).id;
    } catch {
      // not JSON: no id
    }
    if (typeof id === "string" && id) return { tag: "accepted", val: id };
    return { tag: "rejected", val: `no message id in ${JSON.stringify(text)}` };
  }
  if (status === 429 || (status >= 500 && status < 600)) {
    const after = (header(response.headers, "retry-after") ?? "").trim();
    return { tag: "retry-after", val: /^[0-9]+$/.test(after) ? Number(after) : DEFAULT_RETRY_SECS };
  }
  return { tag: "rejected", val: `HTTP ${status}: ${text}` };
}

// A delivery report the vendor sent to the switch.
export function parseDeliveryReport(request, _config) {
  let report;
  try {
    report = JSON.parse(utf8(request.body));
  } catch (e) {
    throw { tag: "invalid", val: `report body is not JSON: ${e.message}` };
  }
  const field = (name) =>
    report && typeof report[name] === "string" && report[name] ? report[name] : null;
  const id = field("id");
  if (!id) throw { tag: "invalid", val: 'report without "id"' };
  const status = field("status");
  if (!status) throw { tag: "invalid", val: 'report without "status"' };
  const state =
    status === "delivered"
      ? "delivered"
      : ["failed", "undelivered", "rejected", "expired"].includes(status)
        ? "failed"
        : "pending";
  return { providerId: id, state, detail: status };
}
