#!/bin/sh
# Creates (or brings to the wanted configs) supplymon's topics on the Kafka cluster,
# from the same settings the workers read: SUPPLYMON_PARTITIONS,
# SUPPLYMON_TOPIC_REPLICATION, SUPPLYMON_TOPIC_CONFIGS (k=v,k=v) and the topic names
# (SUPPLYMON_TOPIC_*, defaults supply.*). Idempotent: run it at every deployment.
# Partitions are fixed at creation for the input topics (an order's events must keep
# meeting in one partition number): plan them with the README's "Sizing".
set -eu
BOOTSTRAP="${KAFKA_BOOTSTRAP:?KAFKA_BOOTSTRAP=host:9092 is required}"
PARTITIONS="${SUPPLYMON_PARTITIONS:-12}"
REPLICATION="${SUPPLYMON_TOPIC_REPLICATION:-3}"
CONFIGS="${SUPPLYMON_TOPIC_CONFIGS:-min.insync.replicas=2,retention.ms=2592000000,message.timestamp.after.max.ms=600000}"
TOPICS="${SUPPLYMON_TOPIC_ORDERS:-supply.orders} ${SUPPLYMON_TOPIC_RESPONSES:-supply.responses} \
${SUPPLYMON_TOPIC_SHIPMENTS:-supply.shipments} ${SUPPLYMON_TOPIC_ARRIVALS:-supply.arrivals} \
${SUPPLYMON_TOPIC_SIGNALS:-supply.signals} ${SUPPLYMON_TOPIC_DEADLETTER:-supply.deadletter} \
${SUPPLYMON_TOPIC_ALERTS:-supply.alerts}"
BIN="${KAFKA_BIN:-/opt/kafka/bin}"

# Wait for the cluster (the brokers start together with this job).
tries=0
until "$BIN/kafka-topics.sh" --bootstrap-server "$BOOTSTRAP" --list >/dev/null 2>&1; do
  tries=$((tries + 1))
  [ "$tries" -lt 60 ] || { echo "Kafka at $BOOTSTRAP not reachable" >&2; exit 1; }
  sleep 5
done

for topic in $TOPICS; do
  "$BIN/kafka-topics.sh" --bootstrap-server "$BOOTSTRAP" --create --if-not-exists --topic "$topic" \
    --partitions "$PARTITIONS" --replication-factor "$REPLICATION"
  # Configs of an existing topic are brought to the wanted values too.
  "$BIN/kafka-configs.sh" --bootstrap-server "$BOOTSTRAP" --alter --entity-type topics \
    --entity-name "$topic" --add-config "$CONFIGS"
done
"$BIN/kafka-topics.sh" --bootstrap-server "$BOOTSTRAP" --describe --topics-with-overrides
