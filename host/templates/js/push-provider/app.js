// {{crate}}: a push provider guest for softswitch, in JavaScript (world
// `{{world_id}}`, in `wit/`).
//
// A push guest only translates: the switch asks it for the HTTP request(s)
// that wake one device for one notification (incoming call, missed call,
// text, voicemail ...), performs them itself (only to the hosts the operator
// allowed), and hands each answer back. The outbox, retries and every
// signing key stay in the switch; a guest that needs a signed token asks the
// `credentials` import for one by the key's name (this one does not).
//
// This one POSTs every notification as JSON to one webhook (an operator's
// own push gateway):
//
//   POST <url>
//   Authorization: <authorization>          (when configured)
//   Content-Type: application/json
//
//   {"kind": "incoming-call", "login": "alice", "token": "<device token>",
//    "app": "...", "sandbox": false, "voip": true, "from": "bob", "title": "Bob",
//    "excerpt": "", "badge": 2, "ts": 1700000000, "id": "...", "call_id": "..."}
//
// Answers: 2xx is delivered, 404 and 410 mean the token is no longer valid
// (the switch deletes it), 429 and 5xx are retried after `Retry-After` (else
// 10 s), anything else fails.
//
// Configuration values (`config = { ... }` of `[push.providers.<name>]`):
//   url            the webhook (required)
//   authorization  value of an `Authorization` header (none by default)
//
// `format`'s WIT result is `result<list<http-request>, error>`: it returns
// the list, or throws the error (`{ tag: "config", val: "url" }`).

// Seconds before a retry when the service gives no `Retry-After`.
const DEFAULT_RETRY_SECS = 10;

// A configuration value (`config` is a list of [key, value]); an empty one
// counts as absent.
function value(config, key) {
  const found = config.find(([k]) => k === key);
  return found && found[1] ? found[1] : null;
}

// The name an alert should show: the user's own address-book name for the
// other party, else their display name, else their login.
const title = (n) => n.fromBookName || n.fromDisplayName || n.fromLogin;

// The request that delivers `notification` to `device`.
export function format(notification, device, config) {
  const url = value(config, "url");
  if (!url || !/^https?:\/\//.test(url)) throw { tag: "config", val: "url" };
  const body = {
    kind: notification.kind,
    login: device.login,
    token: device.token,
    app: device.app,
    sandbox: device.sandbox,
    voip: device.voip,
    from: notification.fromLogin,
    title: title(notification),
    excerpt: notification.excerpt,
    badge: notification.badge,
    // A WIT s64 arrives as a BigInt, which JSON.stringify refuses.
    ts: Number(notification.timestamp),
    id: notification.id,
    call_id: notification.callId ?? null,
  };
  const headers = [{ name: "Content-Type", value: "application/json" }];
  const authorization = value(config, "authorization");
  if (authorization) headers.push({ name: "Authorization", value: authorization });
  return [{ method: "POST", url, headers, body: new TextEncoder().encode(JSON.stringify(body)) }];
}

// What the webhook's answer means.
export function parseResponse(response, _config) {
  const text = new TextDecoder().decode(response.body).trim();
  const { status } = response;
  if (status >= 200 && status < 300) return { tag: "delivered", val: undefined };
  if (status === 404 || status === 410) return { tag: "token-invalid", val: `HTTP ${status} ${text}` };
  if (status === 429 || (status >= 500 && status < 600)) {
    const found = response.headers.find((h) => h.name.toLowerCase() === "retry-after");
    const after = found ? found.value.trim() : "";
    return { tag: "retry-after", val: /^[0-9]+$/.test(after) ? Number(after) : DEFAULT_RETRY_SECS };
  }
  return { tag: "failed", val: `HTTP ${status} ${text}` };
}
