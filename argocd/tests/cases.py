"""Fixtures and docs for the Argo CD health checks; used by hack/test-argocd-health.sh.

    cases.py lua REPO          print a Lua chunk returning the test plan (fixtures as Lua tables,
                               expectations, and the result of the docs/argocd.md drift check)
    cases.py update-docs REPO  rewrite the generated argocd-cm block in docs/argocd.md

Fixtures are argocd/tests/<Kind>/<case>.yaml; argocd/tests/<Kind>/expected.yaml maps each case
to {status, message (substring or list of substrings) | messageIs (exact)}. The script for
<Kind> is argocd/health/mltenant.io_<Kind>.lua.
"""

import os
import sys

import yaml

GROUP = "mltenant.io"
KEY_PREFIX = "resource.customizations.health."
BEGIN = "<!-- argocd-cm:begin"
END = "<!-- argocd-cm:end -->"


class Loader(yaml.SafeLoader):
    """SafeLoader that keeps timestamps as strings, as Argo CD sees them (JSON strings)."""


Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load(path):
    with open(path, encoding="utf-8") as f:
        return yaml.load(f, Loader=Loader)


def lua(value):
    """A Lua 5.1 literal for a JSON-like value (None becomes nil, as Argo CD does)."""
    if value is None:
        return "nil"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        out = []
        for byte in value.encode("utf-8"):
            ch = chr(byte)
            out.append(ch if 32 <= byte < 127 and ch not in '\\"' else f"\\{byte}")
        return '"' + "".join(out) + '"'
    if isinstance(value, list):
        return "{" + ", ".join(lua(v) for v in value) + "}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"[{lua(str(k))}] = {lua(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot express {value!r} in Lua")


def script_path(repo, kind):
    return os.path.join(repo, "argocd", "health", f"{GROUP}_{kind}.lua")


def kinds(repo):
    tests = os.path.join(repo, "argocd", "tests")
    return sorted(d for d in os.listdir(tests) if os.path.isdir(os.path.join(tests, d)) and not d.startswith("."))


def plan(repo):
    """Cases to run plus checks already decided here (missing fixtures, docs drift)."""
    cases, checks = [], []
    for kind in kinds(repo):
        directory = os.path.join(repo, "argocd", "tests", kind)
        expected_path = os.path.join(directory, "expected.yaml")
        expected = load(expected_path) if os.path.exists(expected_path) else {}
        script = script_path(repo, kind)
        if not os.path.exists(script):
            checks.append((kind, False, f"no health script {os.path.relpath(script, repo)}"))
            continue
        fixtures = sorted(f[:-5] for f in os.listdir(directory) if f.endswith(".yaml") and f != "expected.yaml")
        for name in fixtures:
            label = f"{kind}/{name}"
            want = expected.get(name)
            obj = load(os.path.join(directory, name + ".yaml"))
            if not isinstance(want, dict) or "status" not in want:
                checks.append((label, False, f"no expectation in {os.path.relpath(expected_path, repo)}"))
            elif not isinstance(obj, dict) or obj.get("kind") != kind:
                checks.append((label, False, f"fixture is not a {kind} object"))
            else:
                contains = want.get("message", [])
                cases.append({
                    "name": label,
                    "script": script,
                    "obj": obj,
                    "status": want["status"],
                    "contains": contains if isinstance(contains, list) else [contains],
                    "exact": want.get("messageIs"),
                })
        for name in sorted(set(expected) - set(fixtures)):
            checks.append((f"{kind}/{name}", False, f"expectation without fixture {name}.yaml"))
    checks.extend(docs_checks(repo))
    return cases, checks


def scripts(repo):
    return {kind: open(script_path(repo, kind), encoding="utf-8").read()
            for kind in kinds(repo) if os.path.exists(script_path(repo, kind))}


def generated_block(repo):
    lines = [
        "apiVersion: v1",
        "kind: ConfigMap",
        "metadata:",
        "  name: argocd-cm",
        "  namespace: argocd",
        "data:",
    ]
    for kind, text in sorted(scripts(repo).items()):
        lines.append(f"  {KEY_PREFIX}{GROUP}_{kind}: |")
        lines.extend(("    " + line) if line.strip() else "" for line in text.rstrip("\n").split("\n"))
    return "\n".join(lines) + "\n"


def docs_block(text):
    """(start, end) offsets of the ```yaml block between the markers, or None."""
    begin = text.find(BEGIN)
    end = text.find(END, begin)
    if begin < 0 or end < 0:
        return None
    start = text.find("```yaml\n", begin, end)
    stop = text.rfind("```", start + 8, end)
    if start < 0 or stop < 0:
        return None
    return start + len("```yaml\n"), stop


def docs_checks(repo):
    """The argocd-cm snippet in docs/argocd.md must carry exactly the scripts in argocd/health/."""
    path = os.path.join(repo, "docs", "argocd.md")
    label = "docs/argocd.md"
    if not os.path.exists(path):
        return [(label, False, "missing")]
    with open(path, encoding="utf-8") as f:
        text = f.read()
    span = docs_block(text)
    if span is None:
        return [(label, False, f"no ```yaml block between {BEGIN} ...--> and {END}")]
    try:
        configmap = yaml.safe_load(text[span[0]:span[1]])
        data = configmap["data"]
        assert configmap["kind"] == "ConfigMap" and configmap["metadata"]["name"] == "argocd-cm"
    except Exception as e:  # noqa: BLE001 - any shape problem is a failed check
        return [(label, False, f"the argocd-cm block is not a valid argocd-cm ConfigMap: {e}")]
    results = []
    wanted = scripts(repo)
    for kind, script in sorted(wanted.items()):
        key = f"{KEY_PREFIX}{GROUP}_{kind}"
        name = f"{label} {key}"
        snippet = data.get(key)
        if snippet is None:
            results.append((name, False, "key missing; run hack/test-argocd-health.sh --update-docs"))
            continue
        # YAML already removed the block's indentation; compare line by line, ignoring
        # leading/trailing whitespace and trailing blank lines.
        have = [l.strip() for l in snippet.rstrip().split("\n")]
        want = [l.strip() for l in script.rstrip().split("\n")]
        if have == want:
            results.append((name, True, f"matches argocd/health/{GROUP}_{kind}.lua"))
        else:
            line = next((i for i, (a, b) in enumerate(zip(have, want)) if a != b), min(len(have), len(want)))
            detail = (f"differs from argocd/health/{GROUP}_{kind}.lua at script line {line + 1}; "
                      "run hack/test-argocd-health.sh --update-docs")
            results.append((name, False, detail))
    for key in sorted(k for k in data if k.startswith(KEY_PREFIX + GROUP + "_")):
        if key[len(KEY_PREFIX + GROUP) + 1:] not in wanted:
            results.append((f"{label} {key}", False, f"no script argocd/health/{key[len(KEY_PREFIX):]}.lua"))
    return results


def update_docs(repo):
    path = os.path.join(repo, "docs", "argocd.md")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    span = docs_block(text)
    if span is None:
        sys.exit(f"{path}: no ```yaml block between {BEGIN} ...--> and {END}")
    new = text[:span[0]] + generated_block(repo) + text[span[1]:]
    if new != text:
        with open(path, "w", encoding="utf-8") as f:
            f.write(new)
        print(f"updated {os.path.relpath(path, repo)}", file=sys.stderr)


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("lua", "update-docs"):
        sys.exit(__doc__)
    repo = os.path.abspath(sys.argv[2])
    if sys.argv[1] == "update-docs":
        update_docs(repo)
        return
    cases, checks = plan(repo)
    out = ["return {", "cases = {"]
    for case in cases:
        out.append("{" + ", ".join(f"{k} = {lua(v)}" for k, v in case.items()) + "},")
    out.append("},")
    out.append("checks = {")
    for name, ok, detail in checks:
        out.append(f"{{name = {lua(name)}, ok = {lua(ok)}, detail = {lua(detail)}}},")
    out.append("},")
    out.append("}")
    print("\n".join(out))


if __name__ == "__main__":
    main()
