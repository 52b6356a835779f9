#!/usr/bin/env python3
"""Step-up rate sweep against one or several switch nodes at once.

Each step runs one SIPp per node at the same moment, each at RATE / nodes, with
its own users and (for calls) its own callee. A step is clean when every node's
part is clean (sweep.py's rule: failures under 1 %, SIPp reached 95 % of the
rate asked). One JSON line per step, with the figures summed over the nodes.

  cluster_sweep.py --scenario register --rates 1000,2000 \\
      --node 127.0.0.1:5090,PID,users-a.csv,5061,callee-a,5080 \\
      --node 127.0.0.1:5100,PID,users-b.csv,5062,callee-b,5081 ...

A node is TARGET,SERVER_PID,USERS_CSV,UAC_PORT,CALLEE_USER,CALLEE_PORT[,CALLEE_TARGET]:
the callee registers at CALLEE_TARGET (default: TARGET) from CALLEE_PORT, so
callers on one node can call a callee that is registered on another.
"""
import argparse, copy, json, os, sys, threading, time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "anchors"))
import sweep  # noqa: E402  (the single-target sweep: its steps, its rules)

UAC = {"register": "register.xml", "call-auth": "uac_call_auth.xml", "message-auth": "uac_message_auth.xml"}
UAS = {"call-auth": "uas_call.xml", "message-auth": "uas_message.xml"}


def node_args(base, spec, workdir):
    parts = spec.split(",")
    if len(parts) not in (6, 7):
        sys.exit(f"--node wants 6 or 7 comma-separated fields, got: {spec}")
    a = copy.copy(base)
    a.target, pid, a.users, uac_port, a.callee_user, callee_port = parts[:6]
    a.server_pid, a.uac_port, a.callee_port = int(pid), int(uac_port), int(callee_port)
    a.callee_target = parts[6] if len(parts) == 7 else a.target
    a.callee_csv = os.path.join(workdir, f"{a.callee_user}.csv")
    with open(a.callee_csv, "w") as f:
        pw = f"{a.callee_user}pw"
        f.write(f"SEQUENTIAL\n{a.callee_user};{pw};[authentication username={a.callee_user} password={pw}]\n")
    return a


def start_callee(a, workdir, bound):
    # The callee registers where it lives (possibly another node than its callers').
    reg = copy.copy(a)
    reg.target = a.callee_target
    sweep.register_callee(reg, workdir)
    uas = sweep.start_uas(reg, UAS[a.scenario], workdir, bound, a.callee_user)
    time.sleep(0.5)
    if uas.poll() is not None:
        sys.exit(f"UAS exited early; see {workdir}/uas.out")
    return uas


def step(nodes, rate, base_dir, uases):
    share = max(1, rate // len(nodes))
    results = [None] * len(nodes)

    def one(i):
        wd = os.path.join(base_dir, f"r{rate}-node{i}")
        os.makedirs(wd, exist_ok=True)
        results[i] = sweep.run_step(nodes[i], UAC[nodes[i].scenario], share, wd, uases[i])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(nodes))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    total = {"label": nodes[0].label, "scenario": nodes[0].scenario, "nodes": len(nodes),
             "target_rate": share * len(nodes)}
    for k in ("calls", "ok", "failed", "incomplete", "retrans", "udp_rcvbuf_errors"):
        total[k] = sum(r[k] for r in results)
    for k in ("created_rate", "ok_per_s_wall", "server_cpu_pct"):
        total[k] = round(sum(r[k] or 0 for r in results), 1)
    total["fail_pct"] = round(100.0 * (total["failed"] + total["incomplete"]) / total["calls"], 3)
    total["machine_busy_core_pct"] = max(r["machine_busy_core_pct"] for r in results)
    total["wall_s"] = max(r["wall_s"] for r in results)
    for key in results[0]:
        if key.startswith("rtd") and key.endswith("_p99_ms"):
            total[key] = max((r.get(key) or 0) for r in results)
    total["clean"] = all(r["clean"] for r in results)
    total["per_node"] = [{k: r[k] for k in ("ok", "failed", "incomplete", "created_rate", "server_cpu_pct")}
                         for r in results]
    return total


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", choices=sorted(UAC), required=True)
    ap.add_argument("--node", action="append", required=True)
    ap.add_argument("--domain", required=True)
    ap.add_argument("--rates", required=True)
    ap.add_argument("--duration", type=float, default=8.0)
    ap.add_argument("--label", required=True)
    ap.add_argument("--outdir", required=True)
    ap.add_argument("--results", required=True)
    ap.add_argument("--idle-core-pct", type=float, default=25.0)
    ap.add_argument("--idle-wait", type=float, default=240.0)
    ap.add_argument("--settle", type=float, default=3.0)
    cli = ap.parse_args()
    base = argparse.Namespace(
        scenario=cli.scenario, domain=cli.domain, duration=cli.duration, label=cli.label,
        local_ip="127.0.0.1", sipp_cpus="", buff_size=4194304, max_fail_pct=1.0, min_rate_ratio=0.95)
    base_dir = os.path.join(cli.outdir, f"{cli.label}-{cli.scenario}")
    os.makedirs(base_dir, exist_ok=True)
    nodes = [node_args(base, spec, base_dir) for spec in cli.node]
    rates = [int(x) for x in cli.rates.split(",")]
    uases = [None] * len(nodes)
    try:
        if cli.scenario in UAS:
            bound = int(len(rates) * (cli.duration * 2 + 20 + cli.settle + cli.idle_wait + 2) + 30)
            for i, a in enumerate(nodes):
                wd = os.path.join(base_dir, f"callee{i}")
                os.makedirs(wd, exist_ok=True)
                uases[i] = start_callee(a, wd, bound)
        for rate in rates:
            waited = sweep.wait_idle(cli.idle_core_pct, cli.idle_wait)
            res = step(nodes, rate, base_dir, uases)
            res["idle_wait_s"] = waited
            with open(cli.results, "a") as f:
                f.write(json.dumps(res) + "\n")
            print(json.dumps(res), flush=True)
            if not res["clean"]:
                break
            time.sleep(cli.settle)
    finally:
        for u in uases:
            sweep.stop(u)


if __name__ == "__main__":
    main()
