#!/usr/bin/env python3
"""The table of `make bench` (hack/bench.sh): reads the run directory's per-scenario JSON and
API-server metric snapshots, prints one table with ratios, writes everything as JSON to
OUT/<UTC time>.json and OUT/latest.json so runs can be compared.

    hack/bench-report.py RUN_DIR OUT_DIR
"""
import json
import os
import re
import sys
from collections import defaultdict

WRITE_VERBS = {"POST", "PUT", "PATCH", "APPLY", "DELETE", "DELETECOLLECTION"}
SAMPLE = re.compile(r'^(\w+)\{(.*)\} (\S+)$')


def load(run, name):
    try:
        with open(os.path.join(run, name + ".json")) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def apiserver(run, name):
    """Per (verb, resource): requests and seconds the API server spent, during one scenario."""
    def read(path):
        out = defaultdict(float)
        with open(path) as f:
            for line in f:
                m = SAMPLE.match(line.strip())
                if not m:
                    continue
                family, labels, value = m.groups()
                labels = dict(re.findall(r'(\w+)="([^"]*)"', labels))
                key = (family, labels.get("verb", ""), labels.get("resource", ""), labels.get("subresource", ""))
                out[key] += float(value)
        return out
    before = os.path.join(run, name + ".apiserver.before")
    after = os.path.join(run, name + ".apiserver.after")
    if not (os.path.exists(before) and os.path.exists(after)):
        return None
    b, a = read(before), read(after)
    per = defaultdict(lambda: {"requests": 0, "seconds": 0.0})
    for (family, verb, resource, sub), value in a.items():
        delta = value - b.get((family, verb, resource, sub), 0.0)
        if delta <= 0 or verb == "WATCH" or verb == "CONNECT":
            continue
        what = f"{verb} {resource}{'/' + sub if sub else ''}"
        if family == "apiserver_request_total":
            per[what]["requests"] += round(delta)
        elif family == "apiserver_request_duration_seconds_sum":
            per[what]["seconds"] += delta
    writes = sum(v["requests"] for k, v in per.items() if k.split()[0] in WRITE_VERBS)
    reads = sum(v["requests"] for k, v in per.items() if k.split()[0] not in WRITE_VERBS)
    return {
        "writes": writes,
        "reads": reads,
        "write_seconds": round(sum(v["seconds"] for k, v in per.items() if k.split()[0] in WRITE_VERBS), 2),
        "by_request": {k: {"requests": v["requests"], "seconds": round(v["seconds"], 3)} for k, v in sorted(per.items())},
    }


def cpu_split(data):
    """Control-plane CPU seconds used during the scenario, per component."""
    if not data:
        return {}
    out = {}
    for key, value in data.items():
        m = re.fullmatch(r"cpu_(.+)_after", key)
        if m and f"cpu_{m.group(1)}_before" in data:
            out[m.group(1)] = round(value - data[f"cpu_{m.group(1)}_before"], 1)
    return out


def mib(kib):
    return None if kib is None else round(kib / 1024, 1)


def main():
    run, out_dir = sys.argv[1:3]
    machine = load(run, "machine") or {}
    n = machine.get("tenants", 0)
    s = {name: load(run, name) for name in [
        "decrypt", "floor", "live", "backlog", "resync", "reseal", "rotation", "failover",
        "ss-defaults", "ss-unlimited", "restart-plain", "restart-unrelated"]}
    for name in ["floor", "live", "backlog", "ss-defaults", "ss-unlimited"]:
        if s[name] is not None:
            s[name]["apiserver"] = apiserver(run, name)
            s[name]["controlplane_cpu_s"] = cpu_split(s[name])

    rsa = None
    if s["decrypt"]:
        needed = 9 * n + 1  # each tenant's 9-value bundle once (one label per tenant), the shared one once
        rsa = {"decryptions": needed, "ms_per_value": s["decrypt"]["ms_per_value"], "cores": s["decrypt"]["cores"],
               "seconds": round(needed * s["decrypt"]["ms_per_value"] / 1000 / s["decrypt"]["cores"], 2)}
    rows = []

    def row(what, seconds, writes=None, decryptions=None, peak_kib=None, cpu=None, note=""):
        rows.append({"what": what, "seconds": seconds, "writes_per_tenant": None if writes is None or not n else round(writes / n, 1),
                     "decryptions": decryptions, "peak_rss_mib": mib(peak_kib), "cpu_s": cpu, "note": note})

    if s["floor"]:
        f = s["floor"]
        row("raw write floor (concurrent SSA, no reads)", round(f["seconds"], 2), writes=f["objects"],
            note=f"{f['objects']} objects, {f['concurrency']} in flight")
    if rsa:
        row("RSA floor (decryptions x one decryption / cores)", rsa["seconds"], decryptions=rsa["decryptions"],
            note=f"{rsa['ms_per_value']} ms per value, {rsa['cores']} cores")
    for name, what in [("backlog", "mltenant-operator, backlog present at start"),
                       ("live", "mltenant-operator, applied while it runs")]:
        if s[name]:
            d = s[name]
            note = f"apply took {d['apply_s']}s" if "apply_s" in d else "clock starts with the process"
            if "rsa_operations" in d:
                note += f"; {d['rsa_operations']} RSA operations, format {d.get('format', '?')}"
            row(what, d["converge_s"], writes=d["writes"], decryptions=d["decryptions"], peak_kib=d["peak_rss_kib"],
                cpu=d["cpu_s"], note=note)
    for name, what in [("ss-defaults", "sealed-secrets v0.40.0, defaults (client QPS 5)"),
                       ("ss-unlimited", "sealed-secrets v0.40.0, client QPS unlimited")]:
        if s[name]:
            d = s[name]
            note = "" if d["finished"] else f"projected: {d['secrets']} of {6 * n} Secrets in {d['elapsed_s']}s"
            api = d.get("apiserver") or {}
            row(what, d["converge_s"], writes=api.get("writes"), decryptions=None, peak_kib=d["peak_rss_kib"],
                cpu=d["cpu_s"], note=note)

    ours = s["backlog"]
    ratios = {}
    if ours:
        if s["floor"]:
            ratios["ours / raw write floor"] = round(ours["converge_s"] / s["floor"]["seconds"], 2)
        if rsa:
            ratios["ours / RSA floor"] = round(ours["converge_s"] / rsa["seconds"], 2)
        if s["floor"] and rsa:
            ratios["ours / larger floor"] = round(ours["converge_s"] / max(s["floor"]["seconds"], rsa["seconds"]), 2)
        for name in ["ss-defaults", "ss-unlimited"]:
            if s[name]:
                ratios[f"ours / {name} (time)"] = round(ours["converge_s"] / s[name]["converge_s"], 3)
                ratios[f"ours / {name} (peak RSS)"] = round(ours["peak_rss_kib"] / s[name]["peak_rss_kib"], 2)

    print()
    print(f"mltenant bench: {n} tenants x 3 environments x 2 secrets (+1 reader), {machine.get('cores')} cores, {machine.get('date')}")
    print()
    header = ["", "seconds", "writes/tenant", "decryptions", "peak RSS MiB", "CPU s", ""]
    table = [header] + [[r["what"], r["seconds"], r["writes_per_tenant"], r["decryptions"], r["peak_rss_mib"], r["cpu_s"], r["note"]]
                        for r in rows]
    cell = lambda v: "-" if v is None else str(v)
    widths = [max(len(cell(r[i])) for r in table) for i in range(len(header))]
    for i, r in enumerate(table):
        print("  ".join(cell(v).ljust(widths[j]) if j in (0, 6) else cell(v).rjust(widths[j]) for j, v in enumerate(r)))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    print()
    for k, v in ratios.items():
        print(f"{k:40} {v}")
    if s["resync"]:
        r = s["resync"]
        print(f"{'full resync':40} {r['writes']} writes, {r['decryptions']} decryptions, {r['reconciles']} reconciles, "
              f"{r['cpu_percent']}% of a core over {r['window_s']}s")
    if s["reseal"]:
        r = s["reseal"]
        print(f"{'re-seal of the shared bundle':40} {r['seconds']}s until all {r['secrets']} ghcr Secrets carried it "
              f"({r['writes']} writes, {r['decryptions']} decryptions)")
    if s["rotation"]:
        r = s["rotation"]
        print(f"{'a sealing key added':40} {r['decryptions']} decryptions, {r['writes']} writes, quiet after {r['quiet_after_s']}s")
    if s["failover"]:
        r = s["failover"]
        print(f"{'failover (new operator, converged fleet)':40} first write after {r['first_write_s']}s, quiet after {r['quiet_s']}s: "
              f"{r['rsa_operations']} RSA operations, {r['decryptions']} decryptions, {r['writes']} writes "
              f"(format {r.get('format', '?')})")
    if s["restart-plain"] and s["restart-unrelated"]:
        a, b = s["restart-plain"], s["restart-unrelated"]
        for who in ["ours", "ss"]:
            if f"{who}_peak_rss_kib" in a and f"{who}_peak_rss_kib" in b:
                print(f"{'restart peak RSS, ' + who + ' (MiB)':40} {mib(a[who + '_peak_rss_kib'])} without, "
                      f"{mib(b[who + '_peak_rss_kib'])} with {b['unrelated_secrets']} unrelated Secrets")
    for name in ["floor", "backlog", "live", "ss-unlimited"]:
        if s[name] and s[name].get("controlplane_cpu_s"):
            api = s[name].get("apiserver") or {}
            print(f"{'control plane CPU s, ' + name:40} {s[name]['controlplane_cpu_s']}; API writes {api.get('writes')}, "
                  f"reads {api.get('reads')}, server time on writes {api.get('write_seconds')}s")
    profiled = [name for name in ["floor", "backlog", "live"] if s[name] and s[name].get("apiserver_profile")]
    if profiled:
        print("\nkube-apiserver CPU by part, share of its samples (profile of the first seconds of each):")
        parts = s[profiled[0]]["apiserver_profile"]["parts"]
        w = max(map(len, parts))
        print(f"{'':{w}}" + "".join(f"{name:>10}" for name in profiled))
        print(f"{'cores busy':{w}}" + "".join(f"{s[name]['apiserver_profile']['cores_busy']:>10}" for name in profiled))
        for part in parts:
            print(f"{part:{w}}" + "".join(f"{s[name]['apiserver_profile']['parts'][part]['share']:>10.1%}" for name in profiled))

    result = {"machine": machine, "rsa_floor": rsa, "table": rows, "ratios": ratios, "scenarios": s}
    os.makedirs(out_dir, exist_ok=True)
    stamp = machine.get("date", "unknown").replace(":", "")
    for path in [os.path.join(out_dir, f"{stamp}.json"), os.path.join(out_dir, "latest.json")]:
        with open(path, "w") as f:
            json.dump(result, f, indent=1)
    print(f"\nwritten to {os.path.join(out_dir, stamp + '.json')} and latest.json")


if __name__ == "__main__":
    main()
