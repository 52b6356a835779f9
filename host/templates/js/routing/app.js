// {{crate}}: a routing guest for softswitch, in JavaScript (world
// `{{world_id}}`, in `wit/`).
//
// The switch calls `route` once for every new call or message, and again
// when a call to a user was not answered. This router decides:
//
// 1. a retry (no answer, busy, declined, unavailable) ends with the matching
//    SIP status (480, 486, 603);
// 2. a target that is a local account's login or phone number goes to that
//    user's devices;
// 3. a target that starts with a prefix of the `routes` value goes to that
//    prefix's gateway; the longest prefix wins, and a leading `+` is dropped;
// 4. anything else goes to `default-gateway` when it is set, and is refused
//    with 404 `No Route` when it is not.
//
// Configuration values (`[guests.<name>.config]` in softswitch.toml):
//   routes           `prefix:gateway` pairs, comma separated:
//                    "4822:carrier-pl-landline, 48:carrier-pl"
//   default-gateway  gateway for numbers no prefix matches (none: 404)
// A `routes` value that does not parse refuses every call with 500 and a
// warning in the switch's log, so a typo is seen at once.

import { accountByLogin, accountByPhone } from "softswitch:routing/directory@0.1.0";
import { get } from "softswitch:routing/config@0.1.0";
import { log } from "softswitch:routing/log@0.1.0";

const RETRY_ENDS = {
  "no-answer": [480, "Temporarily Unavailable"],
  unavailable: [480, "Temporarily Unavailable"],
  busy: [486, "Busy Here"],
  declined: [603, "Decline"],
};

function reject(code, reason) {
  return { decision: { tag: "reject", val: { code, reason } } };
}

// `prefix:gateway` pairs separated by commas; throws on a bad item.
export function parseRoutes(text) {
  const routes = [];
  for (const item of text.split(",").map((i) => i.trim()).filter((i) => i)) {
    const at = item.indexOf(":");
    if (at < 0) throw new Error(`${JSON.stringify(item)} is not prefix:gateway`);
    const prefix = item.slice(0, at).trim();
    const gateway = item.slice(at + 1).trim();
    if (!/^[0-9]+$/.test(prefix)) throw new Error(`prefix ${JSON.stringify(prefix)} is not digits`);
    if (!gateway) throw new Error(`prefix ${prefix} has no gateway`);
    routes.push({ prefix, gateway });
  }
  return routes;
}

export function route(request) {
  // 1. Asked again because the user's devices did not take the call.
  if (request.reason !== "initial") {
    const [code, reason] = RETRY_ENDS[request.reason] ?? [480, "Temporarily Unavailable"];
    return reject(code, reason);
  }
  const target = request.target.trim();
  if (!target) return reject(484, "Address Incomplete");
  // 2. A local user.
  const user = accountByLogin(target) ?? accountByPhone(target);
  if (user) return { decision: { tag: "to-user", val: user.login } };
  // 3. The longest matching prefix of `routes`.
  let routes;
  try {
    routes = parseRoutes(get("routes") ?? "");
  } catch (e) {
    log("warn", `bad \`routes\` value: ${e.message}`);
    return reject(500, "Bad Routing Configuration");
  }
  const number = target.startsWith("+") ? target.slice(1) : target;
  if (!/^[0-9]+$/.test(number)) return reject(404, "Not Found");
  const toGateway = (gateway) => ({ decision: { tag: "to-gateway", val: { gateway, number } } });
  let best = null;
  for (const r of routes) {
    if (number.startsWith(r.prefix) && (!best || r.prefix.length > best.prefix.length)) best = r;
  }
  if (best) return toGateway(best.gateway);
  // 4. Everything else.
  const fallback = get("default-gateway");
  if (fallback) return toGateway(fallback);
  return reject(404, "No Route");
}
