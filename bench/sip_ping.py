#!/usr/bin/env python3
"""OPTIONS pings at a fixed rate, timed to the microsecond (SIPp's response
times are only as fine as its scheduler's sleeps, 4 ms on an idle box).

  sip_ping.py HOST:PORT RATE SECONDS OUT.json

Each ping is a new OPTIONS transaction from one UDP socket; a 200 matched by
its branch counts, a ping unanswered after 2 s is lost. Writes count, lost,
p50/p99/max in ms."""
import json, select, socket, sys, time, uuid

target, rate, secs, out = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
host, port = target.rsplit(":", 1)
dest = (host, int(port))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
s.setblocking(False)
lport = s.getsockname()[1]
sent, rtts = {}, []
n = int(rate * secs)
start = time.perf_counter()
i = 0
while True:
    now = time.perf_counter()
    if i < n and now >= start + i / rate:
        branch = "z9hG4bK" + uuid.uuid4().hex[:16]
        msg = (f"OPTIONS sip:{target} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{lport};branch={branch}\r\n"
               f"Max-Forwards: 70\r\nFrom: <sip:ping@127.0.0.1>;tag={i}\r\nTo: <sip:{target}>\r\n"
               f"Call-ID: {branch}@ping\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")
        sent[branch] = time.perf_counter()
        s.sendto(msg.encode(), dest)
        i += 1
    next_send = start + i / rate if i < n else time.perf_counter() + 0.01
    ready, _, _ = select.select([s], [], [], max(0.0, min(0.01, next_send - time.perf_counter())))
    try:
        if not ready:
            raise BlockingIOError
        data, _ = s.recvfrom(65535)
        t = time.perf_counter()
        text = data.decode(errors="replace")
        if text.startswith("SIP/2.0 200"):
            b = text.split("branch=", 1)[1].split(";", 1)[0].split("\r", 1)[0] if "branch=" in text else ""
            if b in sent:
                rtts.append((t - sent.pop(b)) * 1000)
        continue
    except BlockingIOError:
        pass
    if i >= n and (not sent or time.perf_counter() > start + n / rate + 2):
        break
rtts.sort()
pct = lambda p: round(rtts[min(len(rtts) - 1, max(0, int(round(p / 100 * len(rtts) + 0.5)) - 1))], 3) if rtts else None
json.dump({"sent": n, "ok": len(rtts), "lost": len(sent), "p50_ms": pct(50), "p99_ms": pct(99),
           "max_ms": round(rtts[-1], 3) if rtts else None}, open(out, "w"))
