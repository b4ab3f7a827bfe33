-- Storage tables of the analytics contract. Every *_store table is a ReplacingMergeTree keyed by
-- what makes a row unique, so a replayed or redelivered event inserts a row that merges away.
-- Analysts query the views of 002, which hide the rows not merged yet.

CREATE TABLE IF NOT EXISTS {database}.messages_store
(
    appid LowCardinality(String),
    bot_wxid String,
    dedup_key String COMMENT 'msg_id when the client sent one, else the gateway event_id',
    event_id String,
    received_at DateTime64(3, 'UTC'),
    event_time DateTime64(3, 'UTC') COMMENT 'msg_timestamp when the client sent one, else received_at',
    msg_id String,
    msg_timestamp Nullable(DateTime64(3, 'UTC')),
    msg_type UInt32,
    direction LowCardinality(String) COMMENT 'incoming or sent (by the bot)',
    chat_kind LowCardinality(String) COMMENT 'private, group or enterprise_group',
    room_wxid String,
    wxid_from String,
    wxid_to String,
    msg String,
    atUserList Array(String),
    file_index String,
    file_name String,
    file_size Nullable(Int64),
    emoji_url String,
    link_title String,
    link_desc String,
    link_url String,
    link_img_url String,
    transferid String,
    paysubtype Nullable(Int32),
    card_wxid String,
    card_nickname String,
    card_alias String,
    miniprogram_title String,
    miniprogram_username String,
    miniprogram_appid String,
    miniprogram_pagepath String,
    raw_msg String,
    raw_msg_error LowCardinality(String) COMMENT 'why raw_msg could not be parsed, empty when it was',
    extra String,
    gateway LowCardinality(String),
    transport LowCardinality(String)
)
ENGINE = ReplacingMergeTree
ORDER BY (appid, bot_wxid, dedup_key);

CREATE TABLE IF NOT EXISTS {database}.contacts_store
(
    appid LowCardinality(String),
    bot_wxid String,
    wxid String,
    kind LowCardinality(String) COMMENT 'user, group or public',
    is_friend UInt8,
    in_snapshot UInt8 COMMENT '1 when the latest report_contact of the bot listed it',
    snapshot_id String,
    wx_alias String,
    nickname String,
    remark_name String,
    head_img String,
    sex Nullable(Int32),
    country String,
    province String,
    city String,
    name String,
    owner_wxid String,
    member_count Nullable(Int32),
    source LowCardinality(String) COMMENT 'action of the latest event that changed the row',
    event_id String,
    updated_at DateTime64(3, 'UTC'),
    fields_version UInt64 COMMENT 'received_at (ms) of the event that set the descriptive fields',
    friend_version UInt64 COMMENT 'received_at (ms) of the event that set is_friend',
    snapshot_version UInt64 COMMENT 'received_at (ms) of the report_contact that set in_snapshot',
    version UInt64 COMMENT 'the largest of the three: the row with the largest version is current'
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (appid, bot_wxid, wxid);

CREATE TABLE IF NOT EXISTS {database}.friend_events_store
(
    appid LowCardinality(String),
    bot_wxid String,
    event_id String,
    event_time DateTime64(3, 'UTC'),
    event_type LowCardinality(String) COMMENT 'new_friend, friend_removed, add_request, zoom_check',
    wxid String,
    nickname String,
    wx_alias String,
    head_img String,
    notice_word String,
    sourceusername String,
    sourcenickname String,
    v1 String,
    v2 String,
    scene String,
    status Nullable(Int32) COMMENT 'zoom_check: 0 normal, 1 blocked the bot, 2 deleted the bot',
    raw_msg String
)
ENGINE = ReplacingMergeTree
ORDER BY (appid, bot_wxid, event_id, event_type, wxid);

CREATE TABLE IF NOT EXISTS {database}.rooms_store
(
    appid LowCardinality(String),
    bot_wxid String,
    room_wxid String,
    chat_kind LowCardinality(String) COMMENT 'group or enterprise_group',
    name String,
    owner_wxid String,
    head_img String,
    member_count Nullable(Int32) COMMENT 'as the client reported it',
    source LowCardinality(String),
    event_id String,
    updated_at DateTime64(3, 'UTC'),
    info_version UInt64 COMMENT 'received_at (ms) of the event that set the group info',
    baseline_version UInt64 COMMENT 'received_at (ms) of the first member snapshot, 0 before any',
    version UInt64 COMMENT 'the larger of the two: the row with the largest version is current'
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (appid, bot_wxid, room_wxid);

CREATE TABLE IF NOT EXISTS {database}.room_members_store
(
    appid LowCardinality(String),
    bot_wxid String,
    room_wxid String,
    member_wxid String,
    present UInt8,
    wx_alias String,
    room_nickname String,
    nickname String,
    head_img String,
    changed_at DateTime64(3, 'UTC'),
    event_id String,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (appid, bot_wxid, room_wxid, member_wxid);

CREATE TABLE IF NOT EXISTS {database}.room_member_events_store
(
    appid LowCardinality(String),
    bot_wxid String,
    room_wxid String,
    member_wxid String,
    change LowCardinality(String) COMMENT 'join or leave',
    source LowCardinality(String) COMMENT 'member_change, snapshot, or initial for the members of a first snapshot',
    source_action LowCardinality(String),
    event_id String,
    event_time DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY (appid, bot_wxid, room_wxid, member_wxid, event_id, change);

CREATE TABLE IF NOT EXISTS {database}.bot_sessions_store
(
    appid LowCardinality(String),
    bot_wxid String,
    event_id String,
    event_type LowCardinality(String) COMMENT 'login or logout',
    event_time DateTime64(3, 'UTC'),
    machine_id String,
    client_version String,
    nickname String,
    wx_alias String,
    head_img String,
    local_ip String,
    client_address String,
    client_session String,
    transport LowCardinality(String),
    gateway LowCardinality(String)
)
ENGINE = ReplacingMergeTree
ORDER BY (appid, bot_wxid, event_id);
