// Least-cost routing, in JavaScript: a routing guest of the world
// softswitch:routing/router@0.1.0, built into a component with
// componentize-js (scripts/build-guests.sh does it):
//
//   componentize-js --wit wit/routing/0.1.0 --world-name router \
//       --out routing_lcr_js.wasm guests/routing/lcr-js/app.js
//
// A target that names a user (login, phone or username) goes to that user.
// Any other target that is a number (an optional `+` or `00`, then digits)
// goes to the cheapest gateway that has a rate for it: each gateway's rate
// is the one of its longest prefix matching the number; equal prices go to
// the longer prefix, then to the gateway named first. No rate: 404 No Route.
// A retry of a call to a user (no answer, busy ...) ends with the status
// that fits; a retry never sends the call elsewhere.
//
// Configuration: `rates`, entries separated by `;`, each
// `<gateway> <prefix>=<price>[,<prefix>=<price>...]`, e.g.
//   rates = "carrier-a 48=0.0120,4860=0.0100; carrier-b 4860=0.0080,44=0.0150"

import {
  accountByLogin,
  accountByPhone,
  accountByUsername,
} from "softswitch:routing/directory@0.1.0";
import { get } from "softswitch:routing/config@0.1.0";
import { log } from "softswitch:routing/log@0.1.0";

function reject(code, reason) {
  return { decision: { tag: "reject", val: { code, reason } } };
}

const RETRY_ENDS = {
  "no-answer": [480, "Temporarily Unavailable"],
  unavailable: [480, "Temporarily Unavailable"],
  busy: [486, "Busy Here"],
  declined: [603, "Decline"],
};

// Parsed `rates`, kept while the text is the same: the instance is reused
// from call to call, and the config does not change under it.
let parsedFrom = null;
let parsed = [];

function rates() {
  const text = get("rates") ?? "";
  if (text !== parsedFrom) {
    parsed = [];
    for (const entry of text.split(";")) {
      const [gateway, list] = entry.trim().split(/\s+/, 2);
      if (!gateway || !list) continue;
      for (const pair of list.split(",")) {
        const [prefix, price] = pair.split("=");
        const value = Number(price);
        if (/^[0-9]+$/.test(prefix ?? "") && Number.isFinite(value) && value >= 0) {
          parsed.push({ gateway, prefix, price: value });
        } else {
          log("warn", `rates: ignoring ${JSON.stringify(pair)} of ${gateway}`);
        }
      }
    }
    parsedFrom = text;
  }
  return parsed;
}

// The cheapest gateway for `number`, or null.
function cheapest(number) {
  const best = new Map(); // gateway -> its longest matching prefix's rate
  for (const rate of rates()) {
    if (!number.startsWith(rate.prefix)) continue;
    const seen = best.get(rate.gateway);
    if (!seen || rate.prefix.length > seen.prefix.length) best.set(rate.gateway, rate);
  }
  let choice = null;
  for (const rate of best.values()) {
    if (
      !choice ||
      rate.price < choice.price ||
      (rate.price === choice.price && rate.prefix.length > choice.prefix.length)
    ) {
      choice = rate;
    }
  }
  return choice;
}

export function route(request) {
  const target = request.target;
  const user =
    accountByLogin(target) ?? accountByPhone(target) ?? accountByUsername(target);
  if (user) {
    if (request.reason !== "initial") {
      const [code, reason] = RETRY_ENDS[request.reason] ?? [480, "Temporarily Unavailable"];
      return reject(code, reason);
    }
    return { decision: { tag: "to-user", val: user.login } };
  }
  const number = target.replace(/^(\+|00)/, "");
  if (!/^[0-9]+$/.test(number)) return reject(404, "Not Found");
  if (request.reason !== "initial") return reject(480, "Temporarily Unavailable");
  const choice = cheapest(number);
  if (!choice) return reject(404, "No Route");
  log("debug", `${number} via ${choice.gateway} (prefix ${choice.prefix}, ${choice.price})`);
  return { decision: { tag: "to-gateway", val: { gateway: choice.gateway, number } } };
}
