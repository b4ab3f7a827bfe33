-- The analyst names: views that show each row once, whether or not its duplicates merged yet.

CREATE VIEW IF NOT EXISTS {database}.messages AS
SELECT * EXCEPT (dedup_key) FROM {database}.messages_store FINAL;

CREATE VIEW IF NOT EXISTS {database}.contacts AS
SELECT * EXCEPT (fields_version, friend_version, snapshot_version, version) FROM {database}.contacts_store FINAL;

CREATE VIEW IF NOT EXISTS {database}.friend_events AS
SELECT * FROM {database}.friend_events_store FINAL;

CREATE VIEW IF NOT EXISTS {database}.room_members AS
SELECT * EXCEPT (present, version) FROM {database}.room_members_store FINAL WHERE present = 1;

CREATE VIEW IF NOT EXISTS {database}.rooms AS
SELECT r.* EXCEPT (info_version, baseline_version, version), ifNull(m.members, 0) AS members
FROM (SELECT * FROM {database}.rooms_store FINAL) AS r
LEFT JOIN
(
    SELECT appid, bot_wxid, room_wxid, toUInt64(count()) AS members
    FROM {database}.room_members_store FINAL
    WHERE present = 1
    GROUP BY appid, bot_wxid, room_wxid
) AS m USING (appid, bot_wxid, room_wxid);

CREATE VIEW IF NOT EXISTS {database}.room_member_events AS
SELECT * FROM {database}.room_member_events_store FINAL WHERE source != 'initial';

CREATE VIEW IF NOT EXISTS {database}.bot_sessions AS
SELECT * FROM {database}.bot_sessions_store FINAL;

-- Members at the end of a day count the members of the first snapshot too (source 'initial').
CREATE VIEW IF NOT EXISTS {database}.room_daily_growth AS
SELECT
    appid, bot_wxid, room_wxid, day, joins, leaves,
    toInt64(joins) - toInt64(leaves) AS net,
    sum(delta) OVER (PARTITION BY appid, bot_wxid, room_wxid ORDER BY day ROWS UNBOUNDED PRECEDING)
        AS members_at_end
FROM
(
    SELECT
        appid, bot_wxid, room_wxid, toDate(event_time) AS day,
        countIf(change = 'join' AND source != 'initial') AS joins,
        countIf(change = 'leave') AS leaves,
        toInt64(countIf(change = 'join')) - toInt64(countIf(change = 'leave')) AS delta
    FROM {database}.room_member_events_store FINAL
    GROUP BY appid, bot_wxid, room_wxid, day
);

CREATE VIEW IF NOT EXISTS {database}.room_daily_activity AS
SELECT
    appid, bot_wxid, room_wxid, toDate(event_time) AS day,
    count() AS messages,
    uniqExact(wxid_from) AS distinct_senders
FROM {database}.messages_store FINAL
WHERE room_wxid != ''
GROUP BY appid, bot_wxid, room_wxid, day;
