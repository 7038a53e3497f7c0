#!/usr/bin/env python3
"""Where the operator's CPU went, from `perf script -F comm,tid,period,ip,sym,dso` output with
call chains (hack/bench.sh, scenario `profile`). Prints two breakdowns of the samples:

* by what the work was for: walking each stack from the leaf up, the first frame that names a
  known kind of work (RSA, JSON, TLS, ...) takes the sample; allocator, libc and kernel frames
  are looked through, so an allocation made while building JSON counts as JSON;
* by where the CPU was when sampled (the leaf frame): shows allocator, memcpy and kernel shares.

Also writes the stacks in the folded format (root first) that inferno-flamegraph reads.

    hack/bench-profile.py PERF_SCRIPT_TEXT FOLDED_OUT
"""
import re
import sys
from collections import Counter

# (category, pattern on the symbol), in the order they are tried on each frame.
PURPOSE = [
    ("RSA-4096 OAEP decryption (aws-lc)", r"RSA|rsa_|rsaz|bn_|BN_|bignum|mont|Oaep|crypto::format::open"),
    ("entropy source start-up (aws-lc jitterentropy)", r"jent_"),
    ("AES-GCM, SHA-256, other crypto", r"aes|gcm|GHASH|ghash|sha256|SHA256|digest|aws_lc"),
    ("TLS (rustls)", r"rustls"),
    ("JSON/YAML (serde)", r"serde_json|serde_yaml|serde::|serde_path|json"),
    ("HTTP client (hyper, tower, http)", r"hyper|h2::|tower|http::|http_body"),
    ("watch caches and controller queue (kube-runtime)", r"kube_runtime"),
    ("kube client (requests, config)", r"kube_client|kube_core"),
    ("metrics (prometheus)", r"prometheus"),
    ("reconcile logic (mltenant_operator)", r"mltenant_operator|mltenant::"),
    ("async runtime (tokio)", r"tokio"),
]
LEAF = [
    ("allocator (malloc/free)", r"malloc|free|realloc|calloc|_int_|tcache|arena|sdallocx|cfree"),
    ("memcpy/memmove/memset", r"mem(cpy|move|set|cmp)|__memcpy|__memmove"),
    ("kernel (syscalls, network, scheduling)", r"^\[k\] "),
] + PURPOSE
SKIP = re.compile(r"^\[k\] |malloc|free|realloc|calloc|_int_|tcache|mem(cpy|move|set|cmp)|\[unknown\]|^_start$|__libc|clone3?$|start_thread")


def samples(path):
    stack, weight = [], 1
    with open(path, errors="replace") as f:
        for line in f:
            if not line.strip():
                if stack:
                    yield weight, stack
                stack, weight = [], 1
                continue
            if line[0] not in " \t":
                parts = line.split()
                weight = int(parts[2]) if len(parts) > 2 and parts[2].isdigit() else 1
                continue
            # "\t  55d0c1a2 symbol+0x12 (dso)"
            m = re.match(r"\s*[0-9a-f]+\s+(.*?)\s+\((.*)\)\s*$", line)
            if m:
                sym, dso = m.groups()
                sym = re.sub(r"\+0x[0-9a-f]+$", "", sym)
                if "kernel.kallsyms" in dso:
                    sym = "[k] " + sym
                stack.append(sym if sym != "[unknown]" else f"[{dso.rsplit('/', 1)[-1]}]")
    if stack:
        yield weight, stack


def classify(frames, table, skip=None):
    for frame in frames:
        if skip and skip.search(frame):
            continue
        for name, pattern in table:
            if re.search(pattern, frame):
                return name
    return "other"


def main():
    path, folded_out = sys.argv[1:3]
    purpose, leaf, folded = Counter(), Counter(), Counter()
    total = 0
    for weight, stack in samples(path):
        total += weight
        purpose[classify(stack, PURPOSE, SKIP)] += weight
        leaf[classify(stack[:1], LEAF)] += weight
        folded[";".join(reversed([re.sub(r"[; ]", "_", f) for f in stack]))] += weight
    with open(folded_out, "w") as f:
        for stack, weight in folded.most_common():
            f.write(f"{stack} {weight}\n")
    for title, counts in [("CPU by purpose (stack walked from the leaf up)", purpose),
                          ("CPU by leaf frame", leaf)]:
        print(f"{title}, {total} samples:")
        for name, weight in counts.most_common():
            print(f"  {100 * weight / max(total, 1):5.1f}%  {name}")
        print()


if __name__ == "__main__":
    main()
