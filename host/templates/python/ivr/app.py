"""{{crate}}: an IVR guest for softswitch, in Python.

World `{{world_id}}` (the contract is in `wit/`). The switch answers a call
that the routing guest sent to a service (`to-service <name>`), then calls
`run` once. Every call-control import blocks until the media engine is done,
so a flow reads like a script. Once the caller hangs up, the import in
progress and every later one raise `Err(IvrError_HungUp())`: left
uncaught, it ends the run, which is a normal ending.

This flow: a greeting, then a one-digit menu, at most three times:

- `1`: the caller's own number, read back digit by digit;
- `0`: goodbye;
- another key: "Invalid option." and the menu again;
- no key within `timeout-ms`: the menu again;

then "Goodbye." and the call ends.

Configuration values (`config = { ... }` of `[ivr.services.<name>]`):

- `greeting`: the prompt played first, by name
  (`<prompts>/<language>/<name>.wav`); none: a beep
- `menu`: the prompt played while waiting for the key; none: silence
- `timeout-ms`: the wait for the key after the menu prompt (5000)

The shipped prompts (the switch's `prompts/` folder) have `vm-invalid` and
`goodbye`, which this flow uses; add your own `greeting` and `menu`
recordings there (8 kHz mono 16-bit WAV) and name them in the config.
"""

from typing import Optional

import wit_world
from wit_world.imports import call, config
from wit_world.imports.types import Audio_Beep, Audio_Prompt, CallFacts, GatherOptions

# Times the menu is offered before the flow says goodbye.
MENU_TRIES = 3


def config_value(key: str) -> Optional[str]:
    """The operator's value for `key`, or None when it is missing or empty."""
    return config.get(key) or None


def timeout_ms() -> int:
    value = (config_value("timeout-ms") or "").strip()
    return int(value) if value.isascii() and value.isdigit() and int(value) > 0 else 5000


def run(facts: CallFacts) -> None:
    call.answer()
    greeting = config_value("greeting")
    call.play([Audio_Prompt(greeting) if greeting else Audio_Beep()], 1, "")
    menu = config_value("menu")
    wait = timeout_ms()
    for _ in range(MENU_TRIES):
        key = call.gather(
            GatherOptions(
                prompt=[Audio_Prompt(menu)] if menu else [],
                min_digits=1,
                max_digits=1,
                finish_key=None,
                timeout_ms=wait,
                inter_digit_timeout_ms=wait,
            )
        )
        if key.digits == "1":
            call.say_digits(facts.caller_id, "")
        elif key.digits == "0":
            break
        elif key.digits:
            call.play([Audio_Prompt("vm-invalid")], 1, "")
    call.play([Audio_Prompt("goodbye")], 1, "")
    call.hangup(200)


class WitWorld(wit_world.WitWorld):
    def run(self, facts: CallFacts) -> None:
        run(facts)
