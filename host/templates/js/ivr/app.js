// {{crate}}: an IVR guest for softswitch, in JavaScript (world
// `{{world_id}}`, in `wit/`).
//
// The switch answers a call that the routing guest sent to a service
// (`to-service <name>`), then calls `run` once. Every call-control import
// blocks until the media engine is done, so a flow reads like a script.
// Once the caller hangs up, the import in progress and every later one
// throw (the error's `payload` is `{ tag: "hung-up" }`): left uncaught, it
// ends the run with `err(hung-up)`, which is a normal ending.
//
// This flow: a greeting, then a one-digit menu, at most three times:
//
// - `1`: the caller's own number, read back digit by digit;
// - `0`: goodbye;
// - another key: "Invalid option." and the menu again;
// - no key within `timeout-ms`: the menu again;
//
// then "Goodbye." and the call ends.
//
// Configuration values (`config = { ... }` of `[ivr.services.<name>]`):
//   greeting    prompt played first, by name (`<prompts>/<language>/<name>.wav`);
//               none: a beep
//   menu        prompt played while waiting for the key; none: silence
//   timeout-ms  wait for the key after the menu prompt (5000)
//
// The shipped prompts (the switch's `prompts/` folder) have `vm-invalid` and
// `goodbye`, which this flow uses; add your own `greeting` and `menu`
// recordings there (8 kHz mono 16-bit WAV) and name them in the config.

import { answer, gather, hangup, play, sayDigits } from "softswitch:ivr/call@0.1.0";
import { get } from "softswitch:ivr/config@0.1.0";

// Times the menu is offered before the flow says goodbye.
const MENU_TRIES = 3;

const prompt = (name) => ({ tag: "prompt", val: name });

// A configuration value; an empty one counts as absent.
const configValue = (key) => get(key) || null;

function timeoutMs() {
  const value = (configValue("timeout-ms") ?? "").trim();
  return /^[0-9]+$/.test(value) && Number(value) > 0 ? Number(value) : 5000;
}

export function run(facts) {
  answer();
  const greeting = configValue("greeting");
  play([greeting ? prompt(greeting) : { tag: "beep" }], 1, "");
  const menu = configValue("menu");
  const wait = timeoutMs();
  for (let i = 0; i < MENU_TRIES; i++) {
    const key = gather({
      prompt: menu ? [prompt(menu)] : [],
      minDigits: 1,
      maxDigits: 1,
      finishKey: undefined,
      timeoutMs: wait,
      interDigitTimeoutMs: wait,
    });
    if (key.digits === "1") sayDigits(facts.callerId, "");
    else if (key.digits === "0") break;
    else if (key.digits) play([prompt("vm-invalid")], 1, "");
  }
  play([prompt("goodbye")], 1, "");
  hangup(200);
}
