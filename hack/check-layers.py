#!/usr/bin/env python3
"""The import graph of the library's top-level modules (src/<module>.rs or src/<module>/), and
of reconcile's own submodules, from `crate::`/`super::` paths in the code (tests excluded).
Fails when either graph has a cycle: a module must be readable knowing only what it imports.

  hack/check-layers.py            check, print each graph as "module -> its imports"
"""
import pathlib
import re
import sys

SRC = pathlib.Path(__file__).resolve().parent.parent / "src"

def names_after(prefix, text):
    """The first path segment after each `prefix::` in `text`, also inside `prefix::{a, b::c}`
    groups; only lower-case segments (modules), not types."""
    found = []
    for match in re.finditer(prefix + r"::(\{[^}]*\}|[a-z_]+)", text):
        part = match.group(1)
        if part.startswith("{"):
            found += [item.strip().split("::")[0] for item in part[1:-1].split(",")]
        else:
            found.append(part)
    return [name for name in found if re.fullmatch(r"[a-z_]+", name) and name != "self"]


def code(path):
    """The file's text up to its test module."""
    text = path.read_text()
    return text.split("#[cfg(test)]", 1)[0]


def module_of(path, root):
    rel = path.relative_to(root)
    return rel.parts[0].removesuffix(".rs")


def graph(root, files, resolve):
    edges = {}
    for path in files:
        source = module_of(path, root)
        if source in ("lib", "main"):
            continue
        deps = edges.setdefault(source, set())
        for target in resolve(path, code(path)):
            if target != source:
                deps.add(target)
    return {m: {d for d in deps if d in edges} for m, deps in edges.items()}


def cycle(edges):
    """One cycle as a list of modules, or None."""
    state = {}

    def visit(node, stack):
        state[node] = "open"
        stack.append(node)
        for dep in sorted(edges[node]):
            if state.get(dep) == "open":
                return stack[stack.index(dep):] + [dep]
            if dep not in state and (found := visit(dep, stack)):
                return found
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node, [])):
            return found
    return None


def crate_level(path, text):
    return names_after(r"\bcrate", text)


def reconcile_level(path, text):
    # Inside src/reconcile: `super::x` from a direct child, `crate::reconcile::x` from anywhere.
    # Items of reconcile/mod.rs itself (Context, Error, ...) count as "mod".
    found = names_after(r"\bcrate::reconcile", text)
    if path == SRC / "reconcile" / "mod.rs":
        declared = re.findall(r"^(?:pub )?mod ([a-z_]+);", text, re.M)
        return found + [m for m in declared if re.search(rf"\b{m}::", text)]
    depth = len(path.relative_to(SRC / "reconcile").parts)
    parent = r"(?<!::)\bsuper" if depth == 1 else r"\bsuper::super"
    found += names_after(parent, text)
    if re.search(r"\bcrate::reconcile::(\{[^}]*\b[A-Z]|[A-Z])", text) or re.search(parent + r"::(\{[^}]*\b[A-Z]|[A-Z])", text):
        found.append("mod")
    return found


def main():
    failed = False
    top = graph(SRC, sorted(SRC.rglob("*.rs")), crate_level)
    rec_root = SRC / "reconcile"
    rec = graph(rec_root, sorted(rec_root.rglob("*.rs")), reconcile_level)
    for name, edges in (("crate", top), ("reconcile", rec)):
        print(f"{name}:")
        for module in sorted(edges):
            print(f"  {module} -> {', '.join(sorted(edges[module])) or '(nothing)'}")
        if found := cycle(edges):
            print(f"import cycle in {name}: {' -> '.join(found)}", file=sys.stderr)
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
