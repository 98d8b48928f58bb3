"""Prometheus metrics served by the worker at /metrics."""
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

events_in = Counter("supplymon_events_in_total", "Valid events read, by kind", ["kind"], registry=REGISTRY)
duplicates = Counter("supplymon_duplicate_events_total", "Events whose event_id was already applied",
                     registry=REGISTRY)
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
stage_seconds = Counter("supplymon_stage_seconds_total",
                        "CPU seconds of the event loop's thread per stage (decode, lifecycle, windows, signals, early_warnings)",
                        ["stage"], registry=REGISTRY)
