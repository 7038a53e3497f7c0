# syntax=docker/dockerfile:1
# The operator image: the `mltenant` binary, built by hack/build-release.sh (the same script
# builds and tests it without Docker: hack/test-release-binary.sh), and exactly the libraries it
# links, put together by hack/image-rootfs.sh. `make image` builds this file's final stage on
# the tree the same scripts give, with buildah and without a daemon (hack/build-image.sh).
#
#   docker build --build-arg SOURCE_DATE_EPOCH="$(git log -1 --format=%ct)" \
#     --build-arg VERSION=0.1.0 --build-arg SOURCE_URL=https://... -t mltenant-operator .
#
# SOURCE_DATE_EPOCH is passed because .git is not in the build context; BuildKit also uses it
# for the image's timestamps (with --output type=image,rewrite-timestamp=true).

# The toolchain CI tests with (rustc 1.95.0): the image's binary is the one that was tested.
ARG RUST_VERSION=1.95.0

FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
# Only what `cargo build --bin mltenant` reads; benches/ because Cargo.toml declares a [[bench]]
# and cargo refuses to load the manifest without its file.
COPY Cargo.toml Cargo.lock ./
COPY src/ src/
COPY benches/ benches/
COPY hack/lib.sh hack/build-release.sh hack/image-rootfs.sh hack/
ARG SOURCE_DATE_EPOCH
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    apt-get update -qq && bin=$(hack/build-release.sh) && hack/image-rootfs.sh "$bin" /out/rootfs

# The binary links glibc dynamically (a static musl build would not be the binary CI tests, and
# aws-lc-rs's C code would need a musl C toolchain): the tree holds it, Debian 12's glibc and
# libgcc_s it links (pinned versions, what distroless/cc-debian12 ships), a passwd/group with
# the non-root user 65532, no shell. hack/build-image.sh builds the lines from here on verbatim.
FROM scratch
ARG VERSION=0.1.0
ARG SOURCE_URL=
LABEL org.opencontainers.image.title="mltenant-operator" \
      org.opencontainers.image.description="Kubernetes operator giving every ML team its environment namespaces and sealed credentials from one MLTenant object" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="${SOURCE_URL}"
COPY --from=build /out/rootfs/ /
# The "nonroot" user of the tree's /etc/passwd, numeric so that runAsNonRoot can verify it.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/mltenant"]
CMD ["controller"]
