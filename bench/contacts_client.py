#!/usr/bin/env python3
"""Client side of bench/contacts.sh: the book, the upload, the polling.

The numbering is shared with the SQL that bench/contacts.sh generates the
accounts with: account n (1..ACCOUNTS) has login u%07d, and a phone
4860%07d when n is a multiple of ACCOUNTS/PHONES. The book has BOOK entries,
MATCHES of them the phones of accounts n = k * ACCOUNTS/MATCHES, the others
national numbers 069xxxxxxx (48 69xxxxxxx once normalised with the owner's
country code 48: no account has one).

  contacts_client.py numbers            normalised book numbers, one a line
  contacts_client.py sync API CERT OWNER PASSWORD [SYNCS]
      logs OWNER in, then SYNCS times (default 1): opens an upload (replace),
      sends the book in chunks of the API's maximum, closes it and polls the
      token every 20 ms until it is done. One JSON line per sync: upload_ms
      (open + chunks), ready_ms (from sending done to the first poll that
      answers done), users, and whether the users are exactly the planted ones.

Sizes come from the environment (ACCOUNTS, PHONES, BOOK, MATCHES, CHUNK).
"""

import http.client
import json
import os
import ssl
import sys
import time

ACCOUNTS = int(os.environ.get("ACCOUNTS", "1000000"))
PHONES = int(os.environ.get("PHONES", "10000"))
BOOK = int(os.environ.get("BOOK", "10000"))
MATCHES = int(os.environ.get("MATCHES", "1000"))
CHUNK = int(os.environ.get("CHUNK", "1000"))
POLL_S = 0.02


def book():
    """[(entry id, name, number as the handset has it, normalised, login or None)]"""
    phone_step, match_step = ACCOUNTS // PHONES, ACCOUNTS // MATCHES
    assert match_step % phone_step == 0, "matched accounts must be ones with a phone"
    every = BOOK // MATCHES
    out, matched, other = [], 0, 0
    for j in range(BOOK):
        if j % every == 0 and matched < MATCHES:
            matched += 1
            n = matched * match_step
            number = f"4860{n:07d}"
            out.append((f"c{j:05d}", f"Friend {j:05d}", f"+48 60 {n:07d}", number, f"u{n:07d}"))
        else:
            other += 1
            out.append((f"c{j:05d}", f"Someone Else {j:05d}", f"069 {other:07d}", f"4869{other:07d}", None))
    assert matched == MATCHES
    return out


class Api:
    def __init__(self, base, cert):
        host, port = base.removeprefix("https://").split(":")
        ctx = ssl.create_default_context(cafile=cert)
        ctx.check_hostname = False
        self.conn = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=120)
        self.token = None

    def call(self, method, path, body=None):
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = None if body is None else json.dumps(body).encode()
        self.conn.request(method, path, body=data, headers=headers)
        r = self.conn.getresponse()
        raw = r.read()
        if r.status >= 300:
            raise SystemExit(f"{method} {path}: {r.status} {raw[:300]!r}")
        return json.loads(raw) if raw else None


def sync(api, entries, expected):
    t0 = time.perf_counter()
    token = api.call("POST", "/v1/contacts/uploads", {"replace": True})["token"]
    total = 0
    for i in range(0, len(entries), CHUNK):
        chunk = [{"id": e[0], "name": e[1], "numbers": [e[2]]} for e in entries[i:i + CHUNK]]
        taken = api.call("POST", f"/v1/contacts/uploads/{token}", {"entries": chunk})
        if taken["rejected"]:
            raise SystemExit(f"{taken['rejected']} numbers rejected")
        total = taken["numbers"]
    t1 = time.perf_counter()
    api.call("POST", f"/v1/contacts/uploads/{token}/done")
    polls = 0
    while True:
        view = api.call("GET", f"/v1/contacts/uploads/{token}")
        polls += 1
        if view["status"] == "done":
            t2 = time.perf_counter()
            break
        time.sleep(POLL_S)
    users = view.get("users") or []
    found = {u["phone"]: u["login"] for u in users}
    return {
        "numbers": total,
        "upload_ms": (t1 - t0) * 1000,
        "ready_ms": (t2 - t1) * 1000,
        "polls": polls,
        "users": len(users),
        "right": found == expected and len(users) == len(expected),
    }


def main():
    cmd = sys.argv[1]
    entries = book()
    if cmd == "numbers":
        print("\n".join(e[3] for e in entries))
        return
    if cmd == "sync":
        base, cert, owner, password = sys.argv[2:6]
        syncs = int(sys.argv[6]) if len(sys.argv) > 6 else 1
        expected = {e[3]: e[4] for e in entries if e[4]}
        api = Api(base, cert)
        api.token = api.call("POST", "/v1/login", {"id": owner, "password": password})["token"]
        for _ in range(syncs):
            print(json.dumps(sync(api, entries, expected)), flush=True)
        return
    raise SystemExit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
