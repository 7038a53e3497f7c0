#!/usr/bin/env bash
# Checks the image `make image` builds (hack/build-image.sh), without a daemon: built twice, it
# has one digest; its one layer holds exactly the file tree hack/image-rootfs.sh gives (type,
# mode, owner, size, content, link target of every entry), which the Dockerfile's build stage
# also runs, and whose final stage is FROM scratch plus that tree; the binary it ships passes
# hack/test-release-binary.sh and runs, as UID 65532, inside that tree; its config names the
# user, entrypoint, port and version the Dockerfile sets. One line per check.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need python3 python3
ok() { echo "ok    $*"; }
cd "$REPO_DIR"

archive=$("$HACK_DIR/build-image.sh")
first=$(cat target/image/digest)
second=$("$HACK_DIR/build-image.sh" >/dev/null && cat target/image/digest)
[ "$first" = "$second" ] || die "reproducible: two builds of one commit gave $first and $second"
ok "reproducible: $first twice ($(du -k "$archive" | cut -f1) KiB archive)"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/oci" "$tmp/layer"
tar -xf "$archive" -C "$tmp/oci"
# The manifest, its config and its one layer, by digest, as a runtime would find them.
python3 - "$tmp/oci" "$tmp" <<'PY'
import json, sys, os, gzip, shutil
oci, out = sys.argv[1], sys.argv[2]
blob = lambda d: os.path.join(oci, "blobs", *d.split(":"))
index = json.load(open(os.path.join(oci, "index.json")))
manifest = json.load(open(blob(index["manifests"][0]["digest"])))
assert len(manifest["layers"]) == 1, f"one layer expected, got {len(manifest['layers'])}"
shutil.copy(blob(manifest["config"]["digest"]), os.path.join(out, "config.json"))
with gzip.open(blob(manifest["layers"][0]["digest"])) as layer, open(os.path.join(out, "layer.tar"), "wb") as tar:
    shutil.copyfileobj(layer, tar)
PY
tar -xpf "$tmp/layer.tar" -C "$tmp/layer" --numeric-owner

# Both trees listed the same way; times aside (buildah sets every one to the commit's).
listing() {
  (cd "$1" && find . -mindepth 1 -printf '%y %m %U:%G %s %P %l\n' | sort -k5 | while read -r type mode owner size path link; do
    sum=-
    [ "$type" = f ] && sum=$(sha256sum "$path" | cut -c1-16)
    echo "$type $mode $owner $size $path ${link:--} $sum"
  done)
}
listing target/image/context/rootfs >"$tmp/expected"
listing "$tmp/layer" >"$tmp/got"
diff -u "$tmp/expected" "$tmp/got" >&2 || die "file tree: the image's layer differs from hack/image-rootfs.sh's tree"
ok "file tree: $(wc -l <"$tmp/got") entries, exactly hack/image-rootfs.sh's ($(grep -c '^f' "$tmp/got") files)"

# The Dockerfile builds the same tree: its build stage runs the same script, its final stage
# (which hack/build-image.sh builds verbatim) starts from scratch and copies only that tree.
dockerfile=$(sed -e ':a' -e '/\\$/N; s/\\\n//; ta' Dockerfile)
# The $ in these patterns and sed scripts are the Dockerfile's and sed's, not the shell's.
# shellcheck disable=SC2016
grep -Eq '^RUN .*bin=\$\(hack/build-release\.sh\) && hack/image-rootfs\.sh "\$bin" /out/rootfs' <<<"$dockerfile" \
  || die "Dockerfile: the build stage does not run hack/image-rootfs.sh on hack/build-release.sh's binary into /out/rootfs"
# shellcheck disable=SC2016
final=$(sed -n '/^FROM /h; /^FROM /!H; ${x;p}' <<<"$dockerfile")
[ "$(grep '^FROM ' <<<"$final")" = "FROM scratch" ] || die "Dockerfile: the final stage is not FROM scratch"
[ "$(grep -E '^(COPY|ADD|RUN) ' <<<"$final")" = "COPY --from=build /out/rootfs/ /" ] \
  || die "Dockerfile: the final stage must copy only /out/rootfs/ of the build stage: $(grep -E '^(COPY|ADD|RUN) ' <<<"$final")"
ok "Dockerfile: build stage runs hack/image-rootfs.sh, final stage FROM scratch + that tree"

# The binary it ships: the release checks, then run inside the image's own tree as 65532.
"$HACK_DIR/test-release-binary.sh" "$tmp/layer/usr/local/bin/mltenant" | sed 's/^/      /'
version=$(awk -F'"' '/^\[/ { pkg = ($0 == "[package]") } pkg && /^version *=/ { print $2; exit }' Cargo.toml)
got=$(chroot --userspec=65532:65532 "$tmp/layer" /usr/local/bin/mltenant --version) \
  || die "runs: /usr/local/bin/mltenant --version failed inside the image's tree as 65532"
[ "$got" = "mltenant $version" ] || die "runs: printed '$got'"
ok "runs: '$got' inside the image's tree as 65532:65532, with only its libraries"

python3 - "$tmp/config.json" "$version" <<'PY'
import json, sys
config, version = json.load(open(sys.argv[1])), sys.argv[2]
c = config["config"]
want = {"User": "65532:65532", "Entrypoint": ["/usr/local/bin/mltenant"], "Cmd": ["controller"]}
for key, value in want.items():
    assert c.get(key) == value, f"config: {key} is {c.get(key)!r}, the Dockerfile says {value!r}"
assert "8080/tcp" in c.get("ExposedPorts", {}), f"config: ExposedPorts {c.get('ExposedPorts')}"
label = c.get("Labels", {}).get("org.opencontainers.image.version")
assert label == version, f"config: version label {label!r}, the crate is {version}"
assert config["os"] == "linux" and config["architecture"] == "amd64", config
PY
ok "config: user 65532:65532, entrypoint /usr/local/bin/mltenant controller, port 8080, version $version"
