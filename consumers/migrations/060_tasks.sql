-- Task lifecycle: one row per (task, status) from the task and task status topics. A status seen
-- twice (a replayed batch, or an expiry written by two gateway replicas) collapses to one row.

CREATE TABLE IF NOT EXISTS {database}.task_events_store
(
    appid LowCardinality(String),
    bot_wxid String,
    task_id String,
    task_type UInt16,
    status LowCardinality(String) COMMENT 'submitted, dispatched, succeeded, failed or expired',
    at DateTime64(3, 'UTC') COMMENT 'when the status happened (created_at for submitted)',
    created_at DateTime64(3, 'UTC') COMMENT 'when the task was submitted',
    gateway String COMMENT 'gateway replica that dispatched, received the result or expired the task',
    source String COMMENT 'who submitted it: cli, api, consumer:media ... (submitted rows only)',
    error_reason String COMMENT 'failed: what WeHub reported; expired: why'
)
ENGINE = ReplacingMergeTree
ORDER BY (appid, bot_wxid, task_id, status);

-- One row per task: its latest status and the latencies between the steps.
CREATE VIEW IF NOT EXISTS {database}.tasks AS
SELECT
    appid, bot_wxid, task_id, task_type, status, created_at, dispatched_at, finished_at,
    dateDiff('millisecond', created_at, dispatched_at) AS dispatch_latency_ms,
    dateDiff('millisecond', dispatched_at, finished_at) AS result_latency_ms,
    source, error_reason
FROM
(
    SELECT
        appid, bot_wxid, task_id,
        max(e.task_type) AS task_type,
        argMax(e.status, multiIf(e.status = 'submitted', 0, e.status = 'dispatched', 1, 2)) AS status,
        min(e.created_at) AS created_at,
        minIfOrNull(e.at, e.status = 'dispatched') AS dispatched_at,
        minIfOrNull(e.at, e.status IN ('succeeded', 'failed', 'expired')) AS finished_at,
        anyIf(e.source, e.status = 'submitted') AS source,
        anyIf(e.error_reason, e.status IN ('failed', 'expired')) AS error_reason
    FROM {database}.task_events_store AS e FINAL
    GROUP BY appid, bot_wxid, task_id
);
