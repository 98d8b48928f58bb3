-- supplymon's ClickHouse tables (contract section 4). Idempotent storage: every
-- table is a ReplacingMergeTree on its natural key, read with FINAL; replays and
-- restarts insert the same rows again and collapse to one logical row.
-- Statements are separated by lines holding only ';'. {db} is the database name.

CREATE DATABASE IF NOT EXISTS {db}
;
CREATE TABLE IF NOT EXISTS {db}.events_raw (
    event_id String,
    kind LowCardinality(String),
    ts DateTime64(3, 'Asia/Shanghai'),
    order_id String,
    payload String CODEC(ZSTD(3)),
    topic LowCardinality(String),
    partition UInt16,
    offset UInt64,
    stored_at DateTime64(3, 'Asia/Shanghai') DEFAULT now64(3)
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY event_id
;
CREATE TABLE IF NOT EXISTS {db}.order_facts (
    order_id String,
    ordered_at DateTime64(3, 'Asia/Shanghai'),
    institution_id String,
    region_code LowCardinality(String),
    area LowCardinality(String),
    grassroots UInt8,
    distributor_id LowCardinality(String),
    manufacturer_id LowCardinality(String),
    product_id LowCardinality(String),
    product_kind LowCardinality(String),
    vbp UInt8,
    quantity UInt32,
    unit_price Float64,
    responded_at Nullable(DateTime64(3, 'Asia/Shanghai')),
    decision LowCardinality(Nullable(String)),
    confirmed_quantity Nullable(UInt32),
    reject_reason LowCardinality(Nullable(String)),
    first_shipped_at Nullable(DateTime64(3, 'Asia/Shanghai')),
    first_received_at Nullable(DateTime64(3, 'Asia/Shanghai')),
    first_confirmed_at Nullable(DateTime64(3, 'Asia/Shanghai')),
    delivered_quantity UInt32,
    shipments UInt16,
    arrivals UInt16,
    deadline_at DateTime64(3, 'Asia/Shanghai'),
    response_deadline_at DateTime64(3, 'Asia/Shanghai'),
    on_time Nullable(UInt8),
    response_hours Nullable(Float64),
    version UInt64
) ENGINE = ReplacingMergeTree(version)
ORDER BY order_id
;
CREATE TABLE IF NOT EXISTS {db}.alerts (
    alert_id String,
    kind LowCardinality(String),
    severity LowCardinality(String),
    -- order, institution, product_region, distributor, manufacturer_city, product_city
    -- (for the *_city types region_code holds the city's code; manufacturer in details)
    subject_type LowCardinality(String),
    order_id String,
    distributor_id LowCardinality(String),
    institution_id String,
    product_id LowCardinality(String),
    region_code LowCardinality(String),
    raised_at DateTime64(3, 'Asia/Shanghai'),
    resolved_at Nullable(DateTime64(3, 'Asia/Shanghai')),
    message String,
    details String,
    version UInt64
) ENGINE = ReplacingMergeTree(version)
ORDER BY alert_id
;
CREATE TABLE IF NOT EXISTS {db}.dead_letters (
    topic LowCardinality(String),
    partition UInt16,
    offset UInt64,
    reason LowCardinality(String),
    detail String,
    event_id Nullable(String),
    original String,
    noticed_at DateTime64(3, 'Asia/Shanghai')
) ENGINE = ReplacingMergeTree
ORDER BY (topic, partition, offset, reason)
;
-- Windowed tables, kept per input partition ("parts") by the workers that own the
-- partitions; the views below sum the parts. family: distributor_daily,
-- distributor_hourly, product_region_daily. closed = every deadline of every order
-- in the window has passed.
CREATE TABLE IF NOT EXISTS {db}.window_parts (
    family LowCardinality(String),
    subject String,
    window_start DateTime64(3, 'Asia/Shanghai'),
    partition UInt16,
    distributor_id LowCardinality(String),
    product_id LowCardinality(String),
    region_code LowCardinality(String),
    orders UInt32,
    responded UInt32,
    responded_within_24h UInt32,
    rejected UInt32,
    delivered_on_time UInt32,
    delivered_late UInt32,
    undelivered UInt32,
    ordered_quantity UInt64,
    delivered_quantity UInt64,
    response_hours Array(Float64),
    closed UInt8,
    version UInt64
) ENGINE = ReplacingMergeTree(version)
ORDER BY (family, subject, window_start, partition)
;
-- One view per family (distributor_daily, distributor_hourly, product_region_daily):
-- {view}, {window} (the window column) and {subject} are filled in by supplymon.store.
CREATE VIEW IF NOT EXISTS {db}.{view} AS
SELECT {window}, {subject},
    sum(orders) AS orders, sum(responded) AS responded, sum(responded_within_24h) AS responded_within_24h,
    sum(rejected) AS rejected, sum(delivered_on_time) AS delivered_on_time, sum(delivered_late) AS delivered_late,
    sum(undelivered) AS undelivered, sum(ordered_quantity) AS ordered_quantity,
    sum(delivered_quantity) AS delivered_quantity,
    if(empty(groupArrayArray(response_hours)), NULL,
       arrayReduce('quantileExact(0.5)', groupArrayArray(response_hours))) AS response_p50_hours,
    if(empty(groupArrayArray(response_hours)), NULL,
       arrayReduce('quantileExact(0.9)', groupArrayArray(response_hours))) AS response_p90_hours,
    min(closed) AS closed
FROM {db}.window_parts FINAL
WHERE family = '{view}'
GROUP BY ALL
;
-- The periodic distributor assessment (`supplymon assess`, chifeng-2025): one row per
-- period, region scope ('' = all) and distributor; a new run of the same period
-- replaces its rows (version = the run's time; distributors no longer assessed get
-- an is_deleted row). Rates are fractions (0.7 = 70 %).
CREATE TABLE IF NOT EXISTS {db}.distributor_assessment (
    period_from Date,
    period_to Date,
    region_code LowCardinality(String),
    distributor_id String,
    distributor_name String,
    registered UInt8,
    orders UInt32,
    open_orders UInt32,
    on_time_rate Nullable(Float64),
    response_24h_rate Nullable(Float64),
    fill_rate Nullable(Float64),
    grassroots_orders UInt32,
    grassroots_delivery_rate Nullable(Float64),
    alerts UInt32,
    alerts_per_100_orders Nullable(Float64),
    alerts_component Nullable(Float64),
    score Nullable(Float64),
    verdict LowCardinality(String),
    reasons Array(String),
    reasons_text String,
    assessed_at DateTime64(3, 'Asia/Shanghai'),
    version UInt64,
    is_deleted UInt8 DEFAULT 0
) ENGINE = ReplacingMergeTree(version, is_deleted)
ORDER BY (period_from, period_to, region_code, distributor_id)
;
-- Monthly VBP monitoring (`supplymon assess vbp`, ganzhou-2023 §二(三)): per month and
-- institution, the selected products' share of quantity and amount and, given an
-- agreed-volume file, the purchase progress of its agreements.
CREATE TABLE IF NOT EXISTS {db}.vbp_monthly (
    month Date,
    region_code LowCardinality(String),
    institution_id String,
    orders UInt32,
    quantity UInt64,
    vbp_quantity UInt64,
    amount Float64,
    vbp_amount Float64,
    vbp_quantity_share Nullable(Float64),
    vbp_amount_share Nullable(Float64),
    agreements UInt32,
    agreements_behind UInt32,
    agreements_not_started UInt32,
    behind_schedule UInt8,
    assessed_at DateTime64(3, 'Asia/Shanghai'),
    version UInt64,
    is_deleted UInt8 DEFAULT 0
) ENGINE = ReplacingMergeTree(version, is_deleted)
ORDER BY (month, region_code, institution_id)
;
CREATE TABLE IF NOT EXISTS {db}.vbp_progress (
    month Date,
    region_code LowCardinality(String),
    institution_id String,
    product_id String,
    period_from Date,
    period_to Date,
    agreed_quantity UInt64,
    purchased_quantity UInt64,
    progress Float64,
    expected_progress Float64,
    behind_schedule UInt8,
    not_started UInt8,
    assessed_at DateTime64(3, 'Asia/Shanghai'),
    version UInt64,
    is_deleted UInt8 DEFAULT 0
) ENGINE = ReplacingMergeTree(version, is_deleted)
ORDER BY (month, region_code, institution_id, product_id, period_from)
;
-- Notifications (contract section 6): one row per delivery of an alert state (or a
-- daily digest) to a recipient on a channel, checked before sending so that a
-- restart or a replay sends nothing twice; the latest status wins (FINAL).
CREATE TABLE IF NOT EXISTS {db}.notifications (
    alert_id String,
    state LowCardinality(String),
    recipient String,
    channel LowCardinality(String),
    status LowCardinality(String),
    attempts UInt16,
    last_error String,
    message LowCardinality(String),
    sent_at Nullable(DateTime64(3, 'Asia/Shanghai')),
    updated_at DateTime64(3, 'Asia/Shanghai'),
    version UInt64
) ENGINE = ReplacingMergeTree(version)
ORDER BY (alert_id, state, recipient, channel)
;
-- Acknowledgements through the signed links in the messages: who, when, what they said.
CREATE TABLE IF NOT EXISTS {db}.alert_acks (
    alert_id String,
    recipient String,
    acked_at DateTime64(3, 'Asia/Shanghai'),
    comment String
) ENGINE = ReplacingMergeTree
ORDER BY (alert_id, recipient, acked_at)
