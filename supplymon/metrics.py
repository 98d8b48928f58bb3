"""Prometheus metrics served by the worker at /metrics."""
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

events_in = Counter("supplymon_events_in_total", "Valid events read, by kind", ["kind"], registry=REGISTRY)
duplicates = Counter("supplymon_duplicate_events_total", "Events whose event_id was already applied",
                     registry=REGISTRY)
per_event_path = Counter("supplymon_per_event_path_events_total",
                         "Events applied one by one through the per-event core (events before their order, "
                         "repeats, ties on time...); the others are applied a batch at a time", registry=REGISTRY)
misplaced_inputs = Counter("supplymon_misplaced_input_events_total",
                           "Events read from another input partition than their order's (its first event's): "
                           "a producer that does not partition the input topics consistently by order_id",
                           registry=REGISTRY)
held_records = Gauge("supplymon_held_input_records",
                     "Input records held back for a later batch: their topic ran ahead in time of a "
                     "co-partitioned one still behind in its log (streams/align.py)", registry=REGISTRY)
dead_letters = Counter("supplymon_dead_letters_total", "Messages sent to the dead-letter topic, by reason",
                       ["reason"], registry=REGISTRY)
sink_rows = Counter("supplymon_sink_rows_total", "Rows written to ClickHouse, by table", ["table"],
                    registry=REGISTRY)
sink_retries = Counter("supplymon_sink_retries_total", "Failed writes that were retried, by ClickHouse table or changelog topic",
                       ["table"], registry=REGISTRY)
sink_refused = Counter("supplymon_sink_refused_rows_total",
                       "Rows the store refused (a value its column cannot hold), sent to the dead letters, by table",
                       ["table"], registry=REGISTRY)
sink_seconds = Histogram("supplymon_sink_write_seconds", "Time to write one batch to ClickHouse",
                         registry=REGISTRY)
alerts_raised = Counter("supplymon_alerts_total", "Alert rows emitted (raised or updated), by kind",
                        ["kind"], registry=REGISTRY)
stream_time = Gauge("supplymon_stream_time_seconds", "Watermark: stream (event) time, Unix seconds",
                    registry=REGISTRY)
open_orders = Gauge("supplymon_open_orders", "Orders held in state on this worker", registry=REGISTRY)
batch_events = Histogram("supplymon_batch_events", "Events per processed batch",
                         buckets=(1, 10, 100, 500, 1000, 2000, 5000, 10000), registry=REGISTRY)
offset_gaps = Counter("supplymon_offset_gaps_total",
                      "Gaps in a partition's delivered offsets (read again by seeking back)",
                      registry=REGISTRY)
signals_sent = Counter("supplymon_signals_total", "Order records sent to the early warnings (changes only)",
                       registry=REGISTRY)
warning_groups = Gauge("supplymon_warning_groups", "Manufacturer and distributor groups watched on this worker",
                       registry=REGISTRY)
warning_time = Gauge("supplymon_warning_stream_time_seconds",
                     "Early warnings' stream time (least over the signals partitions held), Unix seconds",
                     registry=REGISTRY)
system_up = Gauge("supplymon_up", "Whether a system this worker depends on is reachable (1) or not (0), "
                  "by system: store (ClickHouse), broker (Kafka)", ["system"], registry=REGISTRY)
outages = Counter("supplymon_outages_total", "Outages seen (a system going from reachable to not), by system",
                  ["system"], registry=REGISTRY)


def _lag_behind(watermark: Gauge) -> float:
    """Wall clock minus a watermark gauge (seconds); 0 until the first event moves it.
    For alerting on a stalled pipeline only: no rule reads the wall clock."""
    value = watermark._value.get()
    return max(0.0, time.time() - value) if value > 0 else 0.0


stream_time_lag = Gauge("supplymon_stream_time_lag_seconds",
                        "Wall clock minus stream time (the watermark), seconds; 0 before the first event",
                        registry=REGISTRY)
stream_time_lag.set_function(lambda: _lag_behind(stream_time))
warning_time_lag = Gauge("supplymon_warning_stream_time_lag_seconds",
                         "Wall clock minus the early warnings' stream time, seconds; 0 before the first signal",
                         registry=REGISTRY)
warning_time_lag.set_function(lambda: _lag_behind(warning_time))
consumer_lag = Gauge("supplymon_consumer_lag_messages",
                     "Messages of an assigned input partition not yet processed and stored "
                     "(high watermark minus the next offset to store)", ["topic", "partition"], registry=REGISTRY)
stage_seconds = Counter("supplymon_stage_seconds_total",
                        "CPU seconds of the event loop's thread per stage (decode, lifecycle, windows, signals, early_warnings)",
                        ["stage"], registry=REGISTRY)
# Where a batch's time goes on the Kafka path, wall clock per stage (agents/latency.py):
# what an alert waits between its batch's fetch and its send.
batch_latency = Histogram("supplymon_batch_latency_seconds",
                          "Wall seconds a batch of the input topics spent per stage: queued (fetched, waiting "
                          "for the agent), computed (the dataflow), gathered (waiting for its insert), stored "
                          "(the insert), announced (its alerts sent), acked (earlier batches finished, its "
                          "signals and changelog delivered, offsets acknowledged); alerted: fetch to alerts sent, "
                          "batches with alerts only", ["stage"],
                          buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0), registry=REGISTRY)

from supplymon.thread_cpu import ThreadCpuCollector  # noqa: E402  (collected at each scrape)

REGISTRY.register(ThreadCpuCollector())
