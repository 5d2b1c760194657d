#!/usr/bin/env bash
# The single-node Kubernetes tier: pods on a real kubelet.
#
#   tests/node/tier.sh
#
# Builds the image from the Dockerfile (tests/node/image.sh), starts the node
# of ../shared/kube-node (one for the whole tier), imports the image into its
# containerd, runs the scenarios (tests/tests/node/, `--features kube-node`)
# and always stops the node. Needs root (CI runs as root). Under CI=true a
# missing ../shared/kube-node or missing root fails; elsewhere the tier is
# skipped with a line saying why, in the test command's summary too.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
KN=$ROOT/../shared/kube-node
TIER="single-node Kubernetes (../shared/kube-node)"
IMAGE=localhost/pgkafka:dev
TOOLS=${PGKAFKA_TOOLS_DIR:-$HOME/.cache/pgkafka/tools}
export KN_RUN=${KN_RUN:-/tmp/pgkafka-kn}

log() { echo "node tier: $*" >&2; }

# A line for the test command's summary of tiers.
tier_line() {
  if [ -n "${PGKAFKA_TIERS_FILE:-}" ]; then echo "$TIER: $1" >>"$PGKAFKA_TIERS_FILE"; else echo "tier $TIER: $1" >&2; fi
}

cannot_run() {
  if [ "${CI:-}" = true ]; then log "cannot run under CI: $1"; exit 1; fi
  tier_line "SKIPPED ($1)"
  echo "*** SKIPPING the single-node Kubernetes tier: $1 ***" >&2
  exit 0
}

[ -f "$KN/node-up.sh" ] || cannot_run "no ../shared/kube-node next to the repository"
[ "$(id -u)" = 0 ] || cannot_run "it needs root (a kubelet, containerd, a bridge)"

need=()
for pkg in containerd runc containernetworking-plugins iptables conntrack socat buildah debootstrap; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

started=$(date +%s)
mkdir -p "$TOOLS"
tar=$TOOLS/pgkafka-image.tar
bash "$ROOT/tests/node/image.sh" build "$tar"
built=$(date +%s)

on_exit() {
  local rc=$?
  if [ "$rc" != 0 ] && [ -f "$KN_RUN/kubeconfig" ]; then
    log "failed; what the node shows:"
    KUBECONFIG=$KN_RUN/kubeconfig "$("$ROOT/tests/dev-env.sh" kubectl-bin)" get pods,events -A -o wide >&2 || true
  fi
  bash "$KN/node-down.sh" >/dev/null 2>&1 || log "node-down.sh failed"
  exit "$rc"
}
trap on_exit EXIT
bash "$KN/node-down.sh" >/dev/null 2>&1 || true   # a node left by an interrupted run
bash "$KN/node-up.sh" >"$TOOLS/node-up.log" 2>&1 || { cat "$TOOLS/node-up.log" >&2; exit 1; }
ctr -a "$KN_RUN/containerd/containerd.sock" -n k8s.io images import "$tar" >/dev/null
log "node up, $IMAGE imported"

cd "$ROOT"
PGKAFKA_KUBE_NODE_RUN=$KN_RUN PGKAFKA_IMAGE=$IMAGE \
  cargo test -p pgkafka-tests --features kube-node --test node -- --nocapture
tier_line "ran (image built in $((built - started)) s, node and scenarios $(($(date +%s) - built)) s)"
