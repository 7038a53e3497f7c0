#!/usr/bin/env python3
"""Where kube-apiserver's CPU went during one measured run, from its own CPU profile.

    hack/bench-apiserver.py PROFILE.pprof >SUMMARY.json

Reads `go tool pprof -top -cum` of a profile taken from /debug/pprof/profile (the bench takes
one during the write floor and during each converge when BENCH_APISERVER_PROFILE is set) and
prints the share of the server's samples spent in each part of its work. The parts overlap
where one calls the other (the admission policy runs inside the write it checks); "rest" is
what none of them covers: authentication, routing, HTTP/2 and TLS, etcd's client.
"""

import json
import re
import subprocess
import sys

# (part, the pprof function whose cumulative time it is). A request's handler runs in its own
# goroutine, so a write's cost is its registry Update (validation, admission, the
# server-side-apply merge, the etcd round trip), not the filter chain around it.
PARTS = [
    ("writes: custom resources' status (tenant and bundle status)", r"customresource\.\(\*StatusREST\)\.Update$"),
    ("writes: RoleBindings", r"rolebinding/policybased\.\(\*Storage\)\.Update$"),
    ("writes: Roles", r"rbac/role/policybased\.\(\*Storage\)\.Update$"),
    ("writes: Namespaces", r"namespace/storage\.\(\*REST\)\.Update$"),
    ("writes: all (apply, any resource)", r"registry\.\(\*Store\)\.Update$"),
    ("  of which the admission policy (CEL)", r"policy/validating\.\(\*Plugin\)\.Validate$"),
    ("  of which RBAC escalation checks", r"validation\.ConfirmNoEscalation$"),
    ("reads: GET of one object", r"handlers\.GetResource\.getResourceHandler\.func\d+$"),
    ("watches: serving events", r"handlers\.\(\*WatchServer\)\.HandleHTTP$"),
    ("authorization (RBAC)", r"rbac\.\(\*RBACAuthorizer\)\.Authorize$"),
    ("Go garbage collector", r"^runtime\.gcBgMarkWorker$"),
]


def seconds(text: str) -> float:
    """A pprof duration: "0", "850ms" or "1.15s"."""
    if text == "0":
        return 0.0
    return float(text[:-2]) / 1000 if text.endswith("ms") else float(text.rstrip("s"))


def main() -> None:
    top = subprocess.run(
        ["go", "tool", "pprof", "-top", "-cum", "-nodecount=100000", sys.argv[1]],
        check=True, capture_output=True, text=True,
    ).stdout
    total = duration = None
    cum: dict[str, float] = {}
    for line in top.splitlines():
        if m := re.search(r"Duration: ([\d.]+)s, Total samples = ([\d.]+m?s)", line):
            duration = float(m[1])
            total = seconds(m[2])
        # flat flat% sum% cum cum% name (a name may hold spaces: Go generics)
        fields = line.split()
        if len(fields) >= 6 and fields[4].endswith("%") and fields[0][0].isdigit():
            cum[" ".join(fields[5:])] = seconds(fields[3])
    if not total:
        sys.exit(f"{sys.argv[1]}: no samples in the profile")
    parts = {}
    for part, pattern in PARTS:
        spent = sum(s for name, s in cum.items() if re.search(pattern, name))
        parts[part] = {"cpu_s": round(spent, 2), "share": round(spent / total, 3)}
    json.dump({"window_s": duration, "cpu_s": round(total, 2), "cores_busy": round(total / duration, 2), "parts": parts},
              sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
