#!/usr/bin/env bash
# The image, built from the Dockerfile as it is, with buildah and no registry.
#
#   tests/node/image.sh bases         the two base images the Dockerfile names,
#                                     made here from Debian packages (kept once made)
#   tests/node/image.sh build OUT     buildah builds the Dockerfile (unchanged),
#                                     checks every library the binaries need is in
#                                     the runtime image, writes OUT (docker-archive)
#
# With Docker and a registry none of this is needed: `docker build -t pgkafka:dev .`
# pulls the real bases. This machine reaches Debian's archive, crates.io and PyPI
# but no image registry, so the bases are stand-ins tagged with the Dockerfile's
# names:
#   docker.io/library/rust:1-bookworm     a bookworm root (debootstrap) with the
#       C toolchain and the -dev packages of buildpack-deps that decide how the
#       binaries link (zlib1g-dev: libz-sys links zlib dynamically when it finds it),
#       plus this machine's Rust toolchain in /usr/local/{rustup,cargo} as the real
#       image has it, and this machine's CA bundle (its egress proxy signs TLS).
#   gcr.io/distroless/cc-debian12:nonroot what distroless/cc-debian12 holds: libc6,
#       libgcc-s1, libgomp1, libstdc++6, libssl3, Debian's CA certificates, tzdata,
#       netbase, root/nobody/nonroot(65532) in passwd and group, /tmp 1777, user
#       65532, working dir /home/nonroot.
# The build stage gets the host's network (`--network host`): the same registry
# access this machine has (Debian for apt-get, crates.io for cargo).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
RUST_BASE=docker.io/library/rust:1-bookworm
RUNTIME_BASE=gcr.io/distroless/cc-debian12:nonroot
IMAGE=${PGKAFKA_IMAGE:-localhost/pgkafka:dev}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

log() { echo "image: $*" >&2; }

have_image() { buildah inspect --type image "$1" >/dev/null 2>&1; }

# A working container on an empty image, its root mounted; prints "CTR MOUNT".
scratch_container() {
  local ctr mnt
  ctr=$(buildah from scratch)
  mnt=$(buildah mount "$ctr")
  echo "$ctr $mnt"
}

rust_base() {
  have_image "$RUST_BASE" && { log "$RUST_BASE: present"; return; }
  log "making $RUST_BASE (debootstrap bookworm + this machine's Rust toolchain)"
  local ctr mnt sysroot
  read -r ctr mnt < <(scratch_container)
  debootstrap --variant=minbase \
    --include=ca-certificates,curl,git,gcc,g++,make,libc6-dev,zlib1g-dev,xz-utils,patch,file \
    bookworm "$mnt" "$MIRROR" >/tmp/pgkafka-debootstrap.log 2>&1 ||
    { log "debootstrap failed; see /tmp/pgkafka-debootstrap.log"; buildah rm "$ctr" >/dev/null; exit 1; }
  sysroot=$(rustc --print sysroot)
  mkdir -p "$mnt/usr/local/rustup/toolchains/stable" "$mnt/usr/local/cargo/bin"
  # Everything but the documentation (share/doc is most of the size).
  cp -a "$sysroot/bin" "$sysroot/lib" "$sysroot/libexec" "$sysroot/etc" "$mnt/usr/local/rustup/toolchains/stable/"
  for b in "$sysroot"/bin/*; do ln -s "/usr/local/rustup/toolchains/stable/bin/$(basename "$b")" "$mnt/usr/local/cargo/bin/"; done
  cp /etc/ssl/certs/ca-certificates.crt "$mnt/etc/ssl/certs/ca-certificates.crt"
  rm -rf "$mnt/var/cache/apt/archives/"*.deb "$mnt/var/lib/apt/lists/"*
  buildah config --env RUSTUP_HOME=/usr/local/rustup --env CARGO_HOME=/usr/local/cargo \
    --env PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --cmd /bin/bash "$ctr"
  buildah commit -q --rm "$ctr" "$RUST_BASE" >/dev/null
  log "$RUST_BASE: made"
}

runtime_base() {
  have_image "$RUNTIME_BASE" && { log "$RUNTIME_BASE: present"; return; }
  log "making $RUNTIME_BASE (distroless/cc-debian12's packages)"
  local ctr mnt debs deb
  read -r ctr mnt < <(scratch_container)
  debs=$(mktemp -d)
  (cd "$debs" && apt-get download -qq libc6 libgcc-s1 libgomp1 libstdc++6 gcc-12-base libssl3 \
    ca-certificates tzdata netbase >/dev/null)
  for deb in "$debs"/*.deb; do dpkg-deb -x "$deb" "$mnt"; done
  mkdir -p "$mnt/etc/ssl/certs" "$mnt/tmp" "$mnt/home/nonroot" "$mnt/root"
  # ca-certificates ships the certificates; its postinst (not run here) makes the bundle.
  find "$mnt/usr/share/ca-certificates" -name '*.crt' | sort | xargs cat >"$mnt/etc/ssl/certs/ca-certificates.crt"
  chmod 1777 "$mnt/tmp"
  chown 65532:65532 "$mnt/home/nonroot"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$mnt/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\ntty:x:5:\nstaff:x:50:\nnonroot:x:65532:\n' >"$mnt/etc/group"
  rm -rf "$debs" "$mnt/usr/share/doc" "$mnt/usr/share/man"
  buildah config --user 65532 --workingdir /home/nonroot \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt "$ctr"
  buildah commit -q --rm "$ctr" "$RUNTIME_BASE" >/dev/null
  log "$RUNTIME_BASE: made"
}

# Every library the two binaries need, resolved by the runtime image's own
# loader inside the runtime image's root: a "not found" is a library the
# Dockerfile forgot to copy.
check_libraries() {
  local ctr mnt bin out missing=0
  ctr=$(buildah from --pull=never "$IMAGE")
  mnt=$(buildah mount "$ctr")
  for bin in pgkafka-connector pgkafka-operator; do
    out=$(chroot "$mnt" /lib64/ld-linux-x86-64.so.2 --list "/usr/local/bin/$bin" 2>&1) || true
    if grep -q 'not found' <<<"$out" || ! grep -q 'libc.so.6' <<<"$out"; then
      log "$bin in $IMAGE cannot load:"; echo "$out" >&2; missing=1
    else
      log "$bin: every library found in the runtime image ($(grep -c '=>' <<<"$out") libraries)"
    fi
  done
  buildah rm "$ctr" >/dev/null
  return "$missing"
}

build() {
  local out=${1:?OUT.tar}
  rust_base
  runtime_base
  log "buildah build of $ROOT/Dockerfile as $IMAGE"
  # --layers keeps each step's result: an unchanged tree builds in seconds.
  buildah build --pull=never --layers --network host -t "$IMAGE" -f "$ROOT/Dockerfile" "$ROOT" >&2
  check_libraries
  rm -f "$out"
  buildah push -q "$IMAGE" "docker-archive:$out:$IMAGE" >/dev/null
  log "$IMAGE written to $out ($(du -h "$out" | cut -f1))"
}

case "${1:-}" in
  bases) rust_base; runtime_base ;;
  build) build "${2:-}" ;;
  *) sed -n '2,9p' "$0"; exit 2 ;;
esac
