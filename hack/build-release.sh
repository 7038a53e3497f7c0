#!/usr/bin/env bash
# The one release build of `mltenant`: the Dockerfile's build stage runs it, and so does
# hack/test-release-binary.sh, which tests the binary the image would contain. Logs go to
# stderr; stdout is the path of the binary. Honours CARGO_TARGET_DIR, CARGO_HOME and
# SOURCE_DATE_EPOCH.
#
# Reproducible: one commit and toolchain give the same bytes from any checkout path, target
# dir or CARGO_HOME. Those prefixes are remapped to fixed ones: without that, the paths of the
# dependencies' sources under CARGO_HOME end up in panic locations; the checkout and target
# dir (OUT_DIR) are remapped for code that would embed them the same way. SOURCE_DATE_EPOCH
# fixes anything a C compiler would stamp with the build date (__DATE__).
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need cargo
cd "$REPO_DIR"

# Fixed replacements, the same locally and in the image.
SRC_AS=/mltenant-operator
TARGET_AS=/mltenant-operator/target
CARGO_HOME_AS=/cargo

cargo_home=${CARGO_HOME:-$HOME/.cargo}
# Where cargo puts the binary (CARGO_TARGET_DIR, build.target-dir or ./target) and the
# intermediate files such as OUT_DIR (build.build-dir, by default the same), as absolute paths.
metadata=$(cargo metadata --no-deps --format-version 1)
metadata_dir() { sed -n "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p" <<<"$metadata"; }
target_dir=$(metadata_dir target_directory)
build_dir=$(metadata_dir build_directory)
[ -n "$target_dir" ] || die "could not get the target directory from 'cargo metadata'"

# --remap-path-prefix FROM=TO for a directory as given and as resolved (symlinks); when
# several match, rustc applies the last, so the more specific prefixes come later.
flags=()
remap() {
  local dir=$1 to=$2 real
  flags+=("--remap-path-prefix=$dir=$to")
  real=$(cd "$dir" 2>/dev/null && pwd -P) || return 0
  [ "$real" = "$dir" ] || flags+=("--remap-path-prefix=$real=$to")
}
remap "$REPO_DIR" "$SRC_AS"
remap "$cargo_home" "$CARGO_HOME_AS"
mkdir -p "$target_dir"
remap "$target_dir" "$TARGET_AS"
if [ -n "$build_dir" ] && [ "$build_dir" != "$target_dir" ]; then
  mkdir -p "$build_dir"
  remap "$build_dir" "$TARGET_AS"
fi

# Relative relocations packed (DT_RELR, glibc >= 2.36 and binutils >= 2.38, both bookworm's):
# the loader reads 25 KiB of them instead of 1.7 MiB, which stayed resident (measured: 1.8 MiB
# less RSS from the start).
flags+=("-Clink-arg=-Wl,-z,pack-relative-relocs")

# The flags are the release's whole RUSTFLAGS: none from the environment or a cargo config
# (e.g. -C target-cpu=native) slip in. CARGO_ENCODED_RUSTFLAGS keeps paths with spaces intact.
for var in RUSTFLAGS CARGO_ENCODED_RUSTFLAGS CARGO_BUILD_RUSTFLAGS; do
  [ -z "${!var:-}" ] || log "ignoring $var=${!var} (the release build sets its own flags)"
done
unset RUSTFLAGS CARGO_BUILD_RUSTFLAGS
CARGO_ENCODED_RUSTFLAGS=$(IFS=$'\x1f'; echo "${flags[*]}")
export CARGO_ENCODED_RUSTFLAGS

# Measured: the binary does not depend on it (same bytes with 0 and with the commit time), but
# the cc crate rebuilds aws-lc-sys and its dependents whenever it changes, so it stays fixed
# unless the caller sets it.
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-0}
export SOURCE_DATE_EPOCH
export CARGO_INCREMENTAL=0

log "building mltenant (release, --locked, $(rustc --version), SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH) in $target_dir"
start=$SECONDS
cargo build --release --locked --bin mltenant >&2
bin=$target_dir/release/mltenant
[ -x "$bin" ] || die "cargo did not produce $bin"
log "built $bin in $((SECONDS - start))s"
echo "$bin"
