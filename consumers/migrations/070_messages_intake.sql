-- The messages consumer's fast path: an Avro object container of report_new_msg records goes
-- into messages_intake (a Null table: it stores nothing), and the view below turns each record
-- into its messages_store row, inside ClickHouse. consumers.messages builds the same row in
-- Python for the records the fast path leaves out; tests/consumers/test_messages_intake.py
-- checks that both give equal rows.
--
-- The columns are the ReportNewMsgEvent schema with the single-object frame first
-- (schemas/container.py). A change of that schema needs a new migration that replaces both
-- objects; the test above fails until it exists.
--
-- A record the view cannot take raises, and the consumer then decodes the whole batch in
-- Python, which sends what it cannot take to the dead-letter topic: a frame other than the
-- schema's, an empty event_id, appid or bot_wxid, a negative msg_type, a string that is not
-- UTF-8, or a raw_msg from which the row would take fields (those are parsed in Python).

-- Parts of up to 256 MiB are written compact, in one file for all columns instead of two files
-- per column. A batch of 50,000 messages then inserts in half the time where creating files is
-- slow (2.5 µs a row instead of 4.8 on this project's test machine); merges still make the
-- larger parts wide.
ALTER TABLE {database}.messages_store MODIFY SETTING min_bytes_for_wide_part = 268435456;

CREATE TABLE IF NOT EXISTS {database}.messages_intake
(
    frame FixedString(10),
    event_id String,
    received_at DateTime64(3, 'UTC'),
    gateway String,
    appid String,
    bot_wxid String,
    action String,
    client_address String,
    body_bytes Int64,
    transport String,
    client_session Nullable(String),
    extra Nullable(String),
    data Tuple(
        msg Tuple(
            msg_type Int32,
            room_wxid Nullable(String),
            wxid_from Nullable(String),
            wxid_to Nullable(String),
            msg_id Nullable(String),
            msg_timestamp Nullable(Int64),
            msg Nullable(String),
            atUserList Array(String),
            file_index Nullable(String),
            file_name Nullable(String),
            file_size Nullable(Int64),
            raw_msg Nullable(String),
            emoji_url Nullable(String),
            link_title Nullable(String),
            link_desc Nullable(String),
            link_url Nullable(String),
            link_img_url Nullable(String),
            transferid Nullable(String),
            paysubtype Nullable(Int32),
            extra Nullable(String)),
        extra Nullable(String))
)
ENGINE = Null;

CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.messages_intake_rows TO {database}.messages_store AS
WITH
    data.msg AS m,
    ifNull(m.raw_msg, '') AS raw,
    -- msg_timestamp in milliseconds; below 10^11 a client sent seconds (consumers.messages).
    if(ifNull(m.msg_timestamp, 0) <= 0, NULL,
       if(m.msg_timestamp < 100000000000, m.msg_timestamp * 1000, m.msg_timestamp)) AS sent_ms,
    -- consumers.messages.parses_raw_msg, widened: any '<' instead of a leading one.
    m.msg_type NOT IN (1, 3, 34, 43, 47, 4902, 10000)
        AND raw != ''
        AND NOT (m.msg_type = 4903 AND ifNull(m.file_name, '') != '' AND m.file_size IS NOT NULL)
        AND (m.msg_type = 42 OR position(raw, 'appmsg') > 0)
        AND position(raw, '<') > 0 AS parses_raw_msg,
    concatWithSeparator('\n', event_id, gateway, appid, bot_wxid, action, client_address, transport,
        ifNull(client_session, ''), ifNull(extra, ''), ifNull(m.room_wxid, ''), ifNull(m.wxid_from, ''),
        ifNull(m.wxid_to, ''), ifNull(m.msg_id, ''), ifNull(m.msg, ''), arrayStringConcat(m.atUserList, '\n'),
        ifNull(m.file_index, ''), ifNull(m.file_name, ''), raw, ifNull(m.emoji_url, ''), ifNull(m.link_title, ''),
        ifNull(m.link_desc, ''), ifNull(m.link_url, ''), ifNull(m.link_img_url, ''), ifNull(m.transferid, ''),
        ifNull(m.extra, ''), ifNull(data.extra, '')) AS strings,
    frame != unhex('C301C1679D66708116B9')
        OR event_id = '' OR appid = '' OR bot_wxid = ''
        OR m.msg_type < 0
        OR NOT isValidUTF8(strings)
        OR parses_raw_msg AS rejected
SELECT
    appid,
    bot_wxid,
    if(ifNull(m.msg_id, '') != '', concat('msg:', m.msg_id), concat('event:', event_id)) AS dedup_key,
    event_id,
    received_at,
    if(sent_ms IS NULL, received_at, fromUnixTimestamp64Milli(assumeNotNull(sent_ms), 'UTC')) AS event_time,
    ifNull(m.msg_id, '') AS msg_id,
    if(sent_ms IS NULL, NULL, fromUnixTimestamp64Milli(assumeNotNull(sent_ms), 'UTC')) AS msg_timestamp,
    toUInt32(m.msg_type + throwIf(rejected, 'a record of the batch needs the Python path')) AS msg_type,
    if(ifNull(m.wxid_from = bot_wxid, 0), 'sent', 'incoming') AS direction,
    multiIf(ifNull(m.room_wxid, '') = '', 'private',
            endsWith(assumeNotNull(m.room_wxid), '@im.chatroom'), 'enterprise_group', 'group') AS chat_kind,
    ifNull(m.room_wxid, '') AS room_wxid,
    ifNull(m.wxid_from, '') AS wxid_from,
    ifNull(m.wxid_to, '') AS wxid_to,
    ifNull(m.msg, '') AS msg,
    m.atUserList AS atUserList,
    ifNull(m.file_index, '') AS file_index,
    ifNull(m.file_name, '') AS file_name,
    m.file_size AS file_size,
    ifNull(m.emoji_url, '') AS emoji_url,
    ifNull(m.link_title, '') AS link_title,
    ifNull(m.link_desc, '') AS link_desc,
    ifNull(m.link_url, '') AS link_url,
    ifNull(m.link_img_url, '') AS link_img_url,
    ifNull(m.transferid, '') AS transferid,
    m.paysubtype AS paysubtype,
    '' AS card_wxid,
    '' AS card_nickname,
    '' AS card_alias,
    '' AS miniprogram_title,
    '' AS miniprogram_username,
    '' AS miniprogram_appid,
    '' AS miniprogram_pagepath,
    raw AS raw_msg,
    '' AS raw_msg_error,
    ifNull(m.extra, '') AS extra,
    gateway,
    transport
FROM {database}.messages_intake;
