"""Tasks for bots from the compacted task topic, each handed out at most once across replicas.

Every gateway replica reads the whole task topic (`<prefix>.tasks`, keyed by task_id) and the
whole status topic (`<prefix>.task_status`, keyed by the bot's wxid) from the start and then
follows both, so each builds the same `TaskBoard` and a restart loses nothing.

Replicas share nothing but Kafka, so hand-outs are decided by claims on the status topic. A
claim names the task and a fresh claim_id. Because the records of a bot all live in one
partition, every replica sees that bot's claims in the same order, and the first claim of a
task_id wins. A replica hands a task out only after it has read its own claim back as the winner.

Claiming costs a Kafka round trip of a few milliseconds. To keep pull_task fast, a replica that
hands a task out claims the bot's next task at once (claim ahead), so the next poll that reaches
it is served from memory. It does so only when the bot's previous task also went out from this
replica: while a replica has a bot's next claim, polls of that bot landing on other replicas get
no task (they may not skip ahead, or the order would break), so under a round-robin balancer
every replica claims on the poll instead and each poll pays the round trip.
A claim left unused for `CLAIM_TTL_S` is released by its holder, and one never released (its
holder died) counts as lost after twice that time: its task is marked expired, not resent,
because the holder may have handed it out just before it died.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any, cast

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from starlette.routing import BaseRoute

from gateway.app import default_gateway_name
from gateway.publisher import Publisher, PublishError, Record
from gateway.tasks_api import task_routes
from gateway.tasks_board import Claim, Pacing, PendingTask, TaskBoard
from schemas import topics
from schemas.codec import CODEC, CodecError
from wehub.kafka import make_consumer
from wehub.settings import Settings
from wehub.task_validation import TaskInvalid, now_ms, validate_task

log = logging.getLogger(__name__)

CLAIM_SCHEMA = "wehub.task.TaskClaim"
CLAIM_TTL_S = 30.0
# Maximum wait for a claim to come back through Kafka; pull_task then returns no task.
CLAIM_READ_BACK_S = 5.0
# Maximum wait at start for the view to catch up with both topics. Until then pull_task returns no task.
CATCH_UP_WAIT_S = 120.0
_SWEEP_INTERVAL_S = 0.5
_REOPEN_INTERVAL_S = 1.0
_FORGET_INTERVAL_S = 60.0


def tombstone(topic: str, task_id: str) -> Record:
    """Build the null-valued record for `task_id`, after which compaction drops the task."""
    # Publisher hands the value to aiokafka unchanged, and aiokafka sends None as a null value.
    return Record(topic, task_id.encode(), cast(bytes, None))


def _millis(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    return int(value)


class KafkaTaskSource:
    """The TaskSource of the gateway: pending tasks from Kafka, claims and statuses back to Kafka."""

    def __init__(self, settings: Settings, publisher: Publisher, gateway_name: str, claim_ahead: bool = True) -> None:
        self.settings = settings
        self.publisher = publisher
        self.gateway_name = gateway_name
        self.claim_ahead = claim_ahead
        self.tasks_topic = settings.topic(topics.TASKS)
        self.status_topic = settings.topic(topics.TASK_STATUS)
        self.board = TaskBoard(Pacing(
            min_interval_ms=int(float(settings.task_min_interval_s) * 1000),
            daily_accept_cap=int(settings.task_daily_accept_cap),
        ))
        self.claim_ttl_ms = int(CLAIM_TTL_S * 1000)
        self.result_timeout_ms = int(float(settings.task_result_timeout_s) * 1000)
        self._consumer: AIOKafkaConsumer | None = None
        self._ready = asyncio.Event()
        self._background: set[asyncio.Task[Any]] = set()
        self._follower: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None
        # claim_id -> future resolved when the claim is read back from the status topic.
        self._claims_in_flight: dict[str, asyncio.Future[None]] = {}
        # task_id -> claim_id of the claims this replica made and has not handed out yet.
        self._own_claims: dict[str, str] = {}
        self._claiming: dict[str, asyncio.Task[bool]] = {}
        # (deadline_ms, kind, task_id): result timeouts, claim releases and lost claims to check.
        self._deadlines: list[tuple[int, str, str]] = []
        # Tasks whose expiry is being written.
        self._expiring: set[str] = set()
        # Called with each task added to the view; the websocket transport pushes it to a connected bot.
        self.task_listeners: list[Callable[[PendingTask], None]] = []

    # Lifecycle.

    async def start(self) -> None:
        """Read both topics up to their current end (bounded by CATCH_UP_WAIT_S), then follow them.

        Kafka being unreachable, or the topics not existing yet, does not fail the start: the view
        keeps trying in the background and pull_task returns no task until it has caught up.
        """
        self._follower = asyncio.create_task(self._open_and_follow())
        self._sweeper = asyncio.create_task(self._sweep())
        try:
            await asyncio.wait_for(self._ready.wait(), CATCH_UP_WAIT_S)
        except TimeoutError:
            log.warning("task view still catching up after %.0f s, pull_task returns no task until it is done",
                        CATCH_UP_WAIT_S)

    async def _open_and_follow(self) -> None:
        while True:
            opened = await self._open()
            if opened is not None:
                break
            await asyncio.sleep(_REOPEN_INTERVAL_S)
        self._consumer, ends = opened
        await self._follow(self._consumer, ends)

    async def _open(self) -> tuple[AIOKafkaConsumer, dict[TopicPartition, int]] | None:
        """Assign every partition of both topics from the start; None when Kafka or a topic is missing."""
        consumer = make_consumer(self.settings, group_id=None, fetch_max_wait_ms=100, auto_offset_reset="earliest")
        try:
            await consumer.start()
            # AIOKafkaConsumer.topics() returns topic names only; the partitions come with the cluster.
            cluster = await consumer._client.fetch_all_metadata()
            partitions = [
                TopicPartition(topic, number)
                for topic in (self.status_topic, self.tasks_topic)
                for number in sorted(cluster.partitions_for_topic(topic) or ())
            ]
            missing = {self.status_topic, self.tasks_topic} - {partition.topic for partition in partitions}
            if missing:
                log.warning("task topics %s not found, retrying in %.0f s: run `wehub topics` if this persists",
                            ", ".join(sorted(missing)), _REOPEN_INTERVAL_S)
                await consumer.stop()
                return None
            consumer.assign(partitions)
            # NOTE: the status topic is read from its first retained record, so start-up time and the
            # memory of finished task ids grow with its retention (Kafka's default is 7 days).
            await consumer.seek_to_beginning(*partitions)
            # Status ends first: a claim read before its end names a task written before it.
            status_ends = await consumer.end_offsets([p for p in partitions if p.topic == self.status_topic])
            task_ends = await consumer.end_offsets([p for p in partitions if p.topic == self.tasks_topic])
        except KafkaError as error:
            log.warning("task topics not readable, retrying in %.0f s: %s", _REOPEN_INTERVAL_S,
                        type(error).__name__)
            await consumer.stop()
            return None
        except BaseException:
            await consumer.stop()
            raise
        return consumer, {**status_ends, **task_ends}

    async def stop(self) -> None:
        """Release the claims this replica holds unused, so other replicas may hand them out."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        # Release every claim not handed out, including those not read back yet: a release of a
        # claim that lost is ignored, and it follows its claim in the bot's partition.
        releases = []
        for task_id, claim_id in list(self._own_claims.items()):
            task = self.board.tasks.get(task_id)
            if task is not None and task_id not in self.board.dispatched:
                releases.append(self._claim_record(task, claim_id, "release"))
        self._own_claims.clear()
        if releases:
            try:
                await self.publisher.publish(releases)
            except PublishError as error:
                log.warning("%d claims not released, they expire when lost: %s", len(releases), error.detail)
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follower
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    def routes(self) -> list[BaseRoute]:
        return task_routes(self.settings, self.publisher)

    # Following the topics.

    async def _follow(self, consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> None:
        lagging = {partition for partition, end in ends.items() if end > 0}
        if not lagging:
            self._mark_ready()
        while True:
            try:
                batches = await consumer.getmany(timeout_ms=200, max_records=5000)
            except KafkaError as error:
                log.warning("reading the task topics failed, retrying: %s", type(error).__name__)
                await asyncio.sleep(1.0)
                continue
            for partition, messages in batches.items():
                for message in messages:
                    if partition.topic == self.tasks_topic:
                        self._apply_task(message.key, message.value)
                    else:
                        self._apply_status(message.value)
            if lagging:
                for partition in list(lagging):
                    if await consumer.position(partition) >= ends[partition]:
                        lagging.discard(partition)
                if not lagging:
                    self._mark_ready()

    def _mark_ready(self) -> None:
        log.info("task view caught up", extra=self.board.describe())
        self._ready.set()

    def _apply_task(self, key: bytes | None, value: bytes | None) -> None:
        if not value:
            if key is not None:
                self.board.remove_task(key.decode("utf-8", "replace"))
            return
        try:
            _, record = CODEC.decode(value)
            task_dict = orjson.loads(record["task_dict"])
            validate_task(record["task_type"], task_dict, record["bot_wxid"])
        except (CodecError, orjson.JSONDecodeError, KeyError) as error:
            # NOTE: an undecodable task record is skipped here; it reaches no dead-letter topic.
            log.warning("task record skipped, it does not decode: %s", error)
            return
        except TaskInvalid as error:
            log.warning("task %s skipped, it is invalid at %s (%s)", record["task_id"], error.field, error.code)
            return
        task = PendingTask(
            task_id=record["task_id"],
            appid=record["appid"],
            bot_wxid=record["bot_wxid"],
            task_type=record["task_type"],
            task_dict=record["task_dict"],
            created_at=_millis(record["created_at"]) or 0,
            not_before=_millis(record.get("not_before")),
            expires_at=_millis(record.get("expires_at")),
        )
        self.board.add_task(task)
        for listener in self.task_listeners:
            try:
                listener(task)
            except Exception:
                # A failing listener must not stop the view from following the topics.
                log.exception("task listener failed on task %s", task.task_id)

    def _apply_status(self, value: bytes | None) -> None:
        if value is None:
            return
        try:
            schema, record = CODEC.decode(value)
        except CodecError as error:
            log.warning("status record skipped, it does not decode: %s", error)
            return
        task_id = record["task_id"]
        at = _millis(record["at"]) or 0
        if schema == CLAIM_SCHEMA:
            self._apply_claim(record, at)
            return
        status = record["status"]
        if status == "dispatched":
            self.board.apply_dispatch(task_id, (record["appid"], record["bot_wxid"]), record["task_type"],
                                      record.get("gateway") or "", at)
            grace = 0 if record.get("gateway") == self.gateway_name else self.claim_ttl_ms
            heapq.heappush(self._deadlines, (at + self.result_timeout_ms + grace, "result", task_id))
        elif status in ("succeeded", "failed", "expired"):
            self.board.apply_finish(task_id, now_ms())
            self._own_claims.pop(task_id, None)

    def _apply_claim(self, record: dict[str, Any], at: int) -> None:
        task_id, claim_id = record["task_id"], record["claim_id"]
        if record["op"] == "release":
            self.board.apply_release(task_id, claim_id)
            return
        self.board.apply_claim(task_id, claim_id, record["gateway"], at)
        waiter = self._claims_in_flight.pop(claim_id, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        winner = self.board.claims.get(task_id)
        if winner is None or winner.claim_id != claim_id:
            return
        if record["gateway"] == self.gateway_name:
            heapq.heappush(self._deadlines, (at + self.claim_ttl_ms, "release", task_id))
        else:
            heapq.heappush(self._deadlines, (at + 2 * self.claim_ttl_ms, "lost", task_id))

    # pull_task.

    async def next_task(self, appid: str, bot_wxid: str) -> dict[str, Any] | None:
        """Return the bot's oldest due task if this replica may hand it out now, else None.

        A claim that Kafka does not confirm within CLAIM_READ_BACK_S also gives None (the bot polls again).
        """
        if not self._ready.is_set():
            return None
        now = now_ms()
        if self.board.paced(appid, bot_wxid, now):
            return None
        choice = self.board.choose(appid, bot_wxid, now)
        for overdue in choice.overdue:
            self._expire_in_background(overdue, "expires_at passed before dispatch")
        task = choice.task
        if task is None:
            return None

        claim = choice.claim
        if claim is None:
            if not await self._claim(task):
                return None
            claim = self.board.claims.get(task.task_id)
            now = now_ms()
        if claim is None or not self._may_hand_out(task, claim, now):
            return None
        return self._hand_out(task, now)

    def _may_hand_out(self, task: PendingTask, claim: Claim, now: int) -> bool:
        if self._own_claims.get(task.task_id) != claim.claim_id:
            return False
        if now - claim.at >= self.claim_ttl_ms:
            # The release is due: another replica may hand this task out after it.
            return False
        still_pending = task.task_id in self.board.tasks and task.task_id not in self.board.dispatched
        return still_pending and not self.board.paced(task.appid, task.bot_wxid, now)

    def _hand_out(self, task: PendingTask, now: int) -> dict[str, Any]:
        previous = self.board.last_dispatcher(task.appid, task.bot_wxid)
        self._own_claims.pop(task.task_id, None)
        self.board.apply_dispatch(task.task_id, (task.appid, task.bot_wxid), task.task_type, self.gateway_name, now)
        heapq.heappush(self._deadlines, (now + self.result_timeout_ms, "result", task.task_id))
        # The hand-out does not wait for this record: the winning claim already keeps every other
        # replica from sending the task, whether or not the dispatch record arrives.
        self._in_background(self._publish_status(task, "dispatched", now, None))
        # Claim ahead only for a bot whose polls keep reaching this replica. Under a round-robin
        # balancer the previous task went out elsewhere, and a claim held here would make the
        # next poll, landing on the other replica, come back empty.
        if self.claim_ahead and previous in ("", self.gateway_name):
            upcoming = self.board.choose(task.appid, task.bot_wxid, now).task
            if upcoming is not None and upcoming.task_id not in self.board.claims:
                self._in_background(self._claim(upcoming))
        return {"task_id": task.task_id,
                "task_data": {"task_type": task.task_type, "task_dict": orjson.loads(task.task_dict)}}

    async def _claim(self, task: PendingTask) -> bool:
        """Claim `task` and wait for the claim to come back; True when this replica won it."""
        running = self._claiming.get(task.task_id)
        if running is None:
            running = asyncio.create_task(self._claim_once(task))
            self._claiming[task.task_id] = running
            running.add_done_callback(lambda _: self._claiming.pop(task.task_id, None))
        return await asyncio.shield(running)

    async def _claim_once(self, task: PendingTask) -> bool:
        claim_id = uuid.uuid4().hex
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._claims_in_flight[claim_id] = waiter
        self._own_claims[task.task_id] = claim_id
        try:
            await self.publisher.publish([self._claim_record(task, claim_id, "claim")])
            await asyncio.wait_for(waiter, CLAIM_READ_BACK_S)
        except (PublishError, TimeoutError) as error:
            # An unacknowledged claim may still land later; if it wins, the release deadline frees it.
            log.warning("claim of task %s not confirmed: %s", task.task_id, getattr(error, "detail", "timeout"))
            self._claims_in_flight.pop(claim_id, None)
            return False
        claim = self.board.claims.get(task.task_id)
        won = claim is not None and claim.claim_id == claim_id
        if not won and self._own_claims.get(task.task_id) == claim_id:
            del self._own_claims[task.task_id]
        return won

    def _claim_record(self, task: PendingTask, claim_id: str, op: str) -> Record:
        value = CODEC.encode(CLAIM_SCHEMA, {
            "task_id": task.task_id, "appid": task.appid, "bot_wxid": task.bot_wxid, "claim_id": claim_id,
            "gateway": self.gateway_name, "op": op, "at": now_ms(),
        })
        return Record(self.status_topic, task.bot_wxid.encode(), value)

    # report_task_result.

    async def task_result(
        self, appid: str, bot_wxid: str, task_id: str, task_result: int | None, error_reason: str | None
    ) -> None:
        """Record the outcome on the status topic and tombstone the task; raises PublishError.

        A result naming a task that is not pending for that same bot is ignored, so a bot cannot
        remove another bot's task by naming its id. The dispatch itself need not be in this
        replica's view yet, because the result may arrive here before the dispatch record does.
        """
        task = self.board.tasks.get(task_id)
        if task is None or (task.appid, task.bot_wxid) != (appid, bot_wxid):
            log.info("result for task %s ignored: no such task pending for this bot", task_id)
            return
        now = now_ms()
        self.board.apply_finish(task_id, now)
        status = "succeeded" if task_result == 1 else "failed"
        await self.publisher.publish([
            self._status_record(task, status, now, None if task_result == 1 else error_reason),
            tombstone(self.tasks_topic, task_id),
        ])

    # Deadlines.

    async def _sweep(self) -> None:
        forgotten_at = now_ms()
        while True:
            await asyncio.sleep(_SWEEP_INTERVAL_S)
            now = now_ms()
            try:
                self._sweep_once(now)
                if now - forgotten_at > _FORGET_INTERVAL_S * 1000:
                    self.board.forget_finished(now)
                    forgotten_at = now
            except Exception:
                # The next round tries again: a sweeper that died would leave tasks unexpired.
                log.exception("sweeping task deadlines failed")

    def _sweep_once(self, now: int) -> None:
        for task in self.board.pop_overdue(now):
            self._expire_in_background(task, "expires_at passed before dispatch")
        while self._deadlines and self._deadlines[0][0] <= now:
            _, kind, task_id = heapq.heappop(self._deadlines)
            self._check_deadline(kind, task_id, now)

    def _check_deadline(self, kind: str, task_id: str, now: int) -> None:
        task = self.board.tasks.get(task_id)
        if task is None:
            return
        dispatched = task_id in self.board.dispatched
        if kind == "result" and dispatched:
            self._expire_in_background(task, "no report_task_result in time")
        elif kind == "release" and not dispatched:
            claim_id = self._own_claims.pop(task_id, None)
            if claim_id is not None:
                self._in_background(self._publish([self._claim_record(task, claim_id, "release")]))
        elif kind == "lost" and not dispatched and task_id in self.board.claims:
            self._expire_in_background(task, "claim lost with its gateway")
        elif kind.startswith("retry:"):
            self._expire_in_background(task, kind.removeprefix("retry:"))

    def _expire_in_background(self, task: PendingTask, reason: str) -> None:
        if task.task_id not in self.board.tasks or task.task_id in self._expiring:
            return
        self._expiring.add(task.task_id)
        self._own_claims.pop(task.task_id, None)
        self._in_background(self._expire(task, reason))

    async def _expire(self, task: PendingTask, reason: str) -> None:
        """Write the expired status and the tombstone; on failure the next sweep tries again.

        Until the write succeeds the task stays in the view, but nothing hands it out: it is
        dispatched already, past expires_at, or claimed by a gateway that is gone.
        """
        try:
            await self.publisher.publish([
                self._status_record(task, "expired", now_ms(), reason),
                tombstone(self.tasks_topic, task.task_id),
            ])
        except PublishError as error:
            log.warning("task %s not marked expired yet, retrying: %s", task.task_id, error.detail)
            heapq.heappush(self._deadlines, (now_ms() + 1000, f"retry:{reason}", task.task_id))
            return
        finally:
            self._expiring.discard(task.task_id)
        log.info("task %s expired: %s", task.task_id, reason)
        self.board.apply_finish(task.task_id, now_ms())

    # Writing.

    def _status_record(self, task: PendingTask, status: str, at: int, error_reason: str | None) -> Record:
        value = CODEC.encode(topics.TASK_STATUS_SCHEMA, {
            "task_id": task.task_id, "appid": task.appid, "bot_wxid": task.bot_wxid,
            "task_type": task.task_type, "status": status, "at": at, "gateway": self.gateway_name,
            "created_at": task.created_at, "error_reason": error_reason,
        })
        return Record(self.status_topic, task.bot_wxid.encode(), value)

    async def _publish_status(self, task: PendingTask, status: str, at: int, error_reason: str | None) -> None:
        await self._publish([self._status_record(task, status, at, error_reason)])

    async def _publish(self, records: list[Record]) -> None:
        try:
            await self.publisher.publish(records)
        except PublishError as error:
            # NOTE: a lost status record is not retried; the task stays sent at most once either way.
            log.warning("%d task records not written: %s", len(records), error.detail)

    def _in_background(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def build_task_source(settings: Settings, publisher: Publisher) -> KafkaTaskSource:
    """Build the gateway's task source; gateway.app calls it before the publisher starts."""
    # A fresh suffix per process: claims of an earlier run of this gateway must not count as its own.
    name = f"{default_gateway_name(settings)}-{uuid.uuid4().hex[:6]}"
    return KafkaTaskSource(settings, publisher, name, claim_ahead=bool(settings.task_claim_ahead))
