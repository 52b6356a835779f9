"""{{crate}}: a routing guest for softswitch, in Python.

World `{{world_id}}` (the contract is in `wit/`). The switch calls `route`
once for every new call or message, and again when a call to a user was not
answered. This router decides:

1. a retry (no answer, busy, declined, unavailable) ends with the matching
   SIP status (480, 486, 603);
2. a target that is a local account's login or phone number goes to that
   user's devices;
3. a target that starts with a prefix of the `routes` value goes to that
   prefix's gateway; the longest prefix wins, and a leading `+` is dropped;
4. anything else goes to `default-gateway` when it is set, and is refused
   with 404 `No Route` when it is not.

Configuration values (`[guests.<name>.config]` in softswitch.toml):

- `routes`: `prefix:gateway` pairs, comma separated:
  "4822:carrier-pl-landline, 48:carrier-pl"
- `default-gateway`: the gateway for numbers no prefix matches (none: 404)

A `routes` value that does not parse refuses every call with 500 and a
warning in the switch's log, so a typo is seen at once.
"""

from typing import List, Tuple

import wit_world
from wit_world.imports import config, directory, log
from wit_world.imports.types import (
    Decision_Reject,
    Decision_ToGateway,
    Decision_ToUser,
    GatewayTarget,
    Reason,
    Rejection,
    RouteRequest,
    RouteResult,
)

RETRY_ENDS = {
    Reason.NO_ANSWER: (480, "Temporarily Unavailable"),
    Reason.UNAVAILABLE: (480, "Temporarily Unavailable"),
    Reason.BUSY: (486, "Busy Here"),
    Reason.DECLINED: (603, "Decline"),
}


def reject(code: int, reason: str) -> RouteResult:
    return RouteResult(decision=Decision_Reject(Rejection(code=code, reason=reason)), caller_id=None)


def to_gateway(gateway: str, number: str) -> RouteResult:
    return RouteResult(
        decision=Decision_ToGateway(GatewayTarget(gateway=gateway, number=number)), caller_id=None
    )


def parse_routes(text: str) -> List[Tuple[str, str]]:
    """`prefix:gateway` pairs separated by commas; raises ValueError on a bad item."""
    routes = []
    for item in (i.strip() for i in text.split(",")):
        if not item:
            continue
        prefix, colon, gateway = item.partition(":")
        if not colon:
            raise ValueError(f"{item!r} is not prefix:gateway")
        prefix, gateway = prefix.strip(), gateway.strip()
        if not (prefix.isascii() and prefix.isdigit()):
            raise ValueError(f"prefix {prefix!r} is not digits")
        if not gateway:
            raise ValueError(f"prefix {prefix} has no gateway")
        routes.append((prefix, gateway))
    return routes


def decide(request: RouteRequest) -> RouteResult:
    # 1. Asked again because the user's devices did not take the call.
    if request.reason != Reason.INITIAL:
        return reject(*RETRY_ENDS.get(request.reason, (480, "Temporarily Unavailable")))
    target = request.target.strip()
    if not target:
        return reject(484, "Address Incomplete")
    # 2. A local user.
    user = directory.account_by_login(target) or directory.account_by_phone(target)
    if user is not None:
        return RouteResult(decision=Decision_ToUser(user.login), caller_id=None)
    # 3. The longest matching prefix of `routes`.
    try:
        routes = parse_routes(config.get("routes") or "")
    except ValueError as e:
        log.log(log.Level.WARN, f"bad `routes` value: {e}")
        return reject(500, "Bad Routing Configuration")
    number = target[1:] if target.startswith("+") else target
    if number.isascii() and number.isdigit():
        matching = [(prefix, gateway) for prefix, gateway in routes if number.startswith(prefix)]
        if matching:
            return to_gateway(max(matching, key=lambda r: len(r[0]))[1], number)
        # 4. Everything else.
        fallback = config.get("default-gateway")
        if fallback:
            return to_gateway(fallback, number)
    return reject(404, "No Route")


class WitWorld(wit_world.WitWorld):
    def route(self, request: RouteRequest) -> RouteResult:
        return decide(request)
