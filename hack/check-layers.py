#!/usr/bin/env python3
"""The import graph among the children of every module of the library that has children
(the crate's top-level modules, reconcile's, reconcile::tenant's, ...), from the `crate::`,
`super::` and `self::` paths in the code (`use` trees, nested groups included, and paths
written inline), test modules (inline or in `tests.rs`) excluded. Fails when any of these
graphs has a cycle: a module must be readable knowing only what it imports.

  hack/check-layers.py            check, print each graph as "module -> its imports"

A child that uses an item of its parent's own file (`super::Thing` from reconcile/x.rs, say)
depends on `mod`, the parent's mod.rs.
"""
import pathlib
import re
import sys

SRC = pathlib.Path(__file__).resolve().parent.parent / "src"


def without_tests(text):
    """`text` without its `#[cfg(test)] mod ... { ... }` blocks (brace-matched)."""
    out, i = [], 0
    pattern = re.compile(r"#\[cfg\(test\)\]\s*mod\s+\w+\s*\{")
    while match := pattern.search(text, i):
        out.append(text[i:match.start()])
        depth, j = 1, match.end()
        while depth and j < len(text):
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        i = j
    out.append(text[i:])
    return "".join(out)


def use_tree_paths(tree):
    """Every path a `use` tree names: `a::{b, c::{D, e}}` -> a::b, a::c::D, a::c::e."""
    tree = tree.strip()
    brace = tree.find("{")
    if brace < 0:
        return [tree.split(" as ")[0].strip()]
    prefix, inner = tree[:brace], tree[brace + 1:tree.rindex("}")]
    parts, depth, start = [], 0, 0
    for k, ch in enumerate(inner):
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            parts.append(inner[start:k])
            start = k + 1
    parts.append(inner[start:])
    return [prefix + p for part in parts if part.strip() for p in use_tree_paths(part)]


def paths_in(code):
    """Every `crate::`/`super::`/`self::` path in `code` (comments aside), as a list of segments."""
    code = re.sub(r"//[^\n]*", "", code)
    use = re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?use\s+([^;]+);", re.MULTILINE)
    found = []
    for statement in use.finditer(code):
        found += use_tree_paths(statement.group(1))
    inline = use.sub("", code)
    found += re.findall(r"\b(?:crate|super|self)(?:::\w+)+", inline)
    return [[s for s in p.replace(" ", "").split("::") if s] for p in found if re.match(r"(crate|super|self)\b", p)]


def module_path(path):
    """`src/reconcile/tenant/secrets.rs` -> [reconcile, tenant, secrets]; mod.rs names its folder."""
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return parts[:-1] if parts[-1] in ("mod", "lib", "main") else parts


def absolute(path, segments):
    """Resolve a path written in `path`'s file to segments from the crate root."""
    here = module_path(path)
    # `super` is relative to the module the file defines; in mod.rs that module is the folder.
    head, rest = segments[0], segments[1:]
    if head == "crate":
        base = []
    elif head == "self":
        base = here
    else:
        base = here[:-1]
        while rest and rest[0] == "super":
            base, rest = base[:-1], rest[1:]
    return base + rest


def graphs():
    """For every module with children: {child: {children it imports}}."""
    files = [p for p in sorted(SRC.rglob("*.rs")) if p.name not in ("main.rs", "tests.rs")]
    refs = {p: [absolute(p, s) for s in paths_in(without_tests(p.read_text()))] for p in files}
    parents = {tuple(module_path(p)[:-1]) for p in files if module_path(p)}
    result = {}
    for parent in sorted(parents):
        depth = len(parent)
        children = {module_path(p)[depth] for p in files if len(module_path(p)) > depth and tuple(module_path(p)[:depth]) == parent}
        edges = {c: set() for c in children}
        for p, targets in refs.items():
            mp = module_path(p)
            if len(mp) <= depth or tuple(mp[:depth]) != parent:
                continue
            child = mp[depth]
            for target in targets:
                if tuple(target[:depth]) != parent or len(target) <= depth:
                    continue
                name = target[depth]
                if name in children and name != child:
                    edges[child].add(name)
                elif name[:1].isupper() or name not in children:
                    # An item of the parent's own file (a type, a function of mod.rs).
                    edges[child].add("mod")
        if edges:
            edges.setdefault("mod", set())
            result["::".join(parent) or "crate"] = edges
    return result


def cycle(edges):
    """One cycle as a list of modules, or None."""
    state = {}

    def visit(node, stack):
        state[node] = "open"
        stack.append(node)
        for dep in sorted(edges.get(node, ())):
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


def self_test():
    assert use_tree_paths("crate::{a::{B, c::D}, e}") == ["crate::a::B", "crate::a::c::D", "crate::e"]
    assert use_tree_paths("super::x as y") == ["super::x"]
    code = "use crate::{a::{B}, c};\nfn f() { super::d::g(); }\n#[cfg(test)]\nmod tests { use crate::z; }"
    assert paths_in(without_tests(code)) == [["crate", "a", "B"], ["crate", "c"], ["super", "d", "g"]]
    leaf = SRC / "reconcile" / "tenant" / "secrets.rs"
    assert absolute(leaf, ["super", "status", "x"]) == ["reconcile", "tenant", "status", "x"]
    assert absolute(leaf, ["super", "super", "apply"]) == ["reconcile", "apply"]
    assert absolute(SRC / "reconcile" / "mod.rs", ["super", "api"]) == ["api"]
    assert cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]


def main():
    self_test()
    failed = False
    for name, edges in graphs().items():
        print(f"{name}:")
        for module in sorted(edges):
            print(f"  {module} -> {', '.join(sorted(edges[module])) or '(nothing)'}")
        if found := cycle(edges):
            print(f"import cycle in {name}: {' -> '.join(found)}", file=sys.stderr)
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
