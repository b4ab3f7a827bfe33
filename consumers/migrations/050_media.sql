-- Media files of messages and URLs: whether each was requested, stored, skipped or failed, and
-- where its bytes are. One row per (appid, bot_wxid, file_index); the row with the highest
-- version wins, and version ranks status first (stored > failed > requested = skipped), so a
-- stored file never falls back to requested when events arrive out of order.

CREATE TABLE IF NOT EXISTS {database}.media_store
(
    appid LowCardinality(String),
    bot_wxid String,
    file_index String COMMENT 'the message file_index, or url:<sha256 of the URL> for URL media',
    message_id String COMMENT 'msg_id when the client sent one, else the gateway event_id; empty when only the upload was seen',
    msg_type UInt32 COMMENT '0 when only the upload was seen',
    origin LowCardinality(String) COMMENT 'upload (task_type 9) or url (fetched by the media consumer)',
    source_url String,
    status LowCardinality(String) COMMENT 'requested, stored, failed or skipped',
    reason LowCardinality(String) COMMENT 'why skipped or failed: local_path, too_large, type_not_in_policy, fetch_disabled, host_not_allowed, private_address ...',
    declared_size Nullable(Int64) COMMENT 'size the message reported (raw_msg length or file_size)',
    task_id String COMMENT 'the upload task submitted for it',
    bucket String,
    key String,
    sha256 String,
    size Nullable(Int64) COMMENT 'bytes stored',
    content_type String,
    file_name String,
    updated_at DateTime64(3, 'UTC'),
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (appid, bot_wxid, file_index);

CREATE VIEW IF NOT EXISTS {database}.media AS
SELECT * EXCEPT (version) FROM {database}.media_store FINAL;
