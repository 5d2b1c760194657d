#!/usr/bin/env bash
# End to end on a real Kubernetes cluster (kind, or k3d with CLUSTER=k3d), for
# a machine with Docker: build the image, create a cluster, install the chart,
# PostgreSQL and a single-node Kafka, apply a connector, wait for Ready, write
# a row and read its change from Kafka. NOT run where this project is built
# (no Docker engine there); see the README.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CLUSTER=${CLUSTER:-kind}
NAME=${NAME:-pgkafka-e2e}
IMAGE=pgkafka:e2e
NS=shop

need() { command -v "$1" >/dev/null || { echo "e2e-kind: $1 is required" >&2; exit 2; }; }
need docker; need kubectl; need helm; need "$CLUSTER"

docker build -t "$IMAGE" "$ROOT"
if [ "$CLUSTER" = k3d ]; then
  k3d cluster create "$NAME" --wait
  k3d image import "$IMAGE" -c "$NAME"
else
  kind create cluster --name "$NAME" --wait 120s
  kind load docker-image "$IMAGE" --name "$NAME"
fi
trap '[ "${KEEP:-}" ] || { if [ "$CLUSTER" = k3d ]; then k3d cluster delete "$NAME"; else kind delete cluster --name "$NAME"; fi; }' EXIT

helm install pgkafka "$ROOT/charts/pgkafka-operator" -n pgkafka-system --create-namespace \
  --set image.repository=pgkafka --set image.tag=e2e --set image.pullPolicy=Never --wait

kubectl create namespace "$NS"
kubectl -n "$NS" create secret generic shop-db --from-literal=password=secret
kubectl -n "$NS" apply -f - <<'YAML'
apiVersion: apps/v1
kind: Deployment
metadata: {name: db}
spec:
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers:
        - name: postgres
          image: postgres:15
          args: ["-c", "wal_level=logical"]
          env: [{name: POSTGRES_PASSWORD, value: secret}, {name: POSTGRES_DB, value: shop}]
          ports: [{containerPort: 5432}]
          readinessProbe: {exec: {command: ["pg_isready", "-U", "postgres"]}}
---
apiVersion: v1
kind: Service
metadata: {name: db}
spec: {selector: {app: db}, ports: [{port: 5432}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: kafka}
spec:
  selector: {matchLabels: {app: kafka}}
  template:
    metadata: {labels: {app: kafka}}
    spec:
      containers:
        - name: kafka
          image: apache/kafka:3.8.0
          env:
            - {name: KAFKA_NODE_ID, value: "1"}
            - {name: KAFKA_PROCESS_ROLES, value: "broker,controller"}
            - {name: KAFKA_LISTENERS, value: "PLAINTEXT://:9092,CONTROLLER://:9093"}
            - {name: KAFKA_ADVERTISED_LISTENERS, value: "PLAINTEXT://kafka:9092"}
            - {name: KAFKA_CONTROLLER_LISTENER_NAMES, value: CONTROLLER}
            - {name: KAFKA_CONTROLLER_QUORUM_VOTERS, value: "1@localhost:9093"}
            - {name: KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR, value: "1"}
            - {name: KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR, value: "1"}
            - {name: KAFKA_TRANSACTION_STATE_LOG_MIN_ISR, value: "1"}
          ports: [{containerPort: 9092}]
---
apiVersion: v1
kind: Service
metadata: {name: kafka}
spec: {selector: {app: kafka}, ports: [{port: 9092}]}
YAML
kubectl -n "$NS" rollout status deploy/db --timeout=180s
kubectl -n "$NS" rollout status deploy/kafka --timeout=180s
kubectl -n "$NS" exec deploy/db -- psql -U postgres -d shop -c \
  "CREATE TABLE orders (id bigserial PRIMARY KEY, customer text, amount numeric(10,2))"

kubectl -n "$NS" apply -f - <<'YAML'
apiVersion: pgkafka.io/v1alpha1
kind: PgKafkaConnector
metadata: {name: orders}
spec:
  postgres: {host: db, database: shop, user: postgres, passwordSecretRef: {name: shop-db, key: password}, sslMode: disable}
  publication: {name: orders_pub}
  slot: {name: orders_slot}
  reclaimPolicy: Delete
  kafka: {bootstrapServers: ["kafka:9092"], topicPrefix: cdc}
  listeners: [{table: public.orders}]
YAML
kubectl -n "$NS" wait pgkc/orders --for=condition=Ready --timeout=300s
kubectl -n "$NS" get pgkc orders
kubectl -n "$NS" exec deploy/db -- psql -U postgres -d shop -c "INSERT INTO orders (customer, amount) VALUES ('kind', 1.50)"
out=$(kubectl -n "$NS" exec deploy/kafka -- /opt/kafka/bin/kafka-console-consumer.sh \
  --bootstrap-server localhost:9092 --topic cdc.public.orders --from-beginning --max-messages 1 --timeout-ms 60000)
echo "$out"
echo "$out" | grep -q '"customer":"kind"' || { echo "e2e-kind: the change did not arrive" >&2; exit 1; }
kubectl -n "$NS" delete pgkc orders --wait --timeout=120s
slots=$(kubectl -n "$NS" exec deploy/db -- psql -U postgres -d shop -tAc "SELECT count(*) FROM pg_replication_slots")
[ "$slots" = 0 ] || { echo "e2e-kind: reclaimPolicy Delete left $slots slot(s)" >&2; exit 1; }
echo "e2e-kind: passed"
