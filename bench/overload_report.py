#!/usr/bin/env python3
"""The table of bench/overload.sh from its sweep results (JSON lines).

Goodput is calls completed per second of offered load: the step's completed
calls over the time SIPp took to offer them (calls / created rate). Its ratio
is against the clean rate of the same server in the same run.

    overload_report.py RESULTS.jsonl
"""
import json
import sys

LABELS = [
    ("switch-sweep", "switch-shedding", "the switch, shedding on"),
    ("switch-sweep", "switch-no-shedding", "the switch, shedding off"),
    ("kamailio-sweep", "kamailio-multiples", "Kamailio 5.6 (kit, auth cfg)"),
]


def main():
    rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
    by_label = {}
    for r in rows:
        by_label.setdefault(r["label"], []).append(r)
    print("| server | clean rate (calls/s) | offered | created/s | completed | goodput (calls/s) "
          "| of the clean rate | established, then dropped | setup p99 (ms) | server CPU |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for sweep, multiples, name in LABELS:
        clean = max([r["target_rate"] for r in by_label.get(sweep, []) if r["clean"]] or [0])
        if not clean or multiples not in by_label:
            continue
        for r in [c for c in by_label[sweep] if c["clean"] and c["target_rate"] == clean] + by_label[multiples]:
            offering_s = r["calls"] / max(r["created_rate"], 1e-9)
            goodput = r["ok"] / offering_s
            dropped = (r["established"] - r["ended"]) if r.get("established") is not None else "–"
            print(f"| {name} | {clean:,} | {r['target_rate'] / clean:.1f}× ({r['target_rate']:,}/s) "
                  f"| {r['created_rate']:,.0f} | {r['ok']:,} of {r['calls']:,} | {goodput:,.0f} "
                  f"| **{goodput / clean:.2f}** | {r.get('established', '–')}, {dropped} "
                  f"| {r.get('rtd1_p99_ms', '–')} | {r.get('server_cpu_pct', '–')} % |")


if __name__ == "__main__":
    main()
