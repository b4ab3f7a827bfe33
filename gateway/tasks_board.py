"""The gateway's in-memory view of pending tasks, built from the task and task status topics.

The view does no I/O: `gateway.tasks` feeds it the records of both topics in partition order and
lets it choose which task a bot may get next. Every replica builds the same view from the same records,
so the rules here decide the same way everywhere:

- a task is pending from its record in the compacted task topic until its tombstone;
- the first `claim` of a task_id on the status topic wins; later claims lose, unless the winner
  released its claim first;
- a task is handed out only by the replica that won its claim, and only when no earlier task of
  the same bot (ordered by created_at, then task_id) is still waiting for its hand-out.
"""

from __future__ import annotations

import bisect
import heapq
from dataclasses import dataclass, field
from typing import Any

from wehub.task_validation import ACCEPT_FRIEND_REQUEST

BotKey = tuple[str, str]
DAY_MS = 86_400_000
FINISHED_MEMORY_MS = 3_600_000


@dataclass(slots=True)
class PendingTask:
    """A task of the compacted topic that has no tombstone yet."""

    task_id: str
    appid: str
    bot_wxid: str
    task_type: int
    task_dict: str
    created_at: int
    not_before: int | None
    expires_at: int | None

    @property
    def order(self) -> tuple[int, str]:
        return (self.created_at, self.task_id)


@dataclass(slots=True)
class Claim:
    """The winning claim of a task: its claim_id, the claiming gateway and the claim time (ms)."""

    claim_id: str
    gateway: str
    at: int


@dataclass(slots=True)
class BotState:
    """A bot's pending tasks in hand-out order, and the pacing facts of its dispatches."""

    tasks: list[PendingTask] = field(default_factory=list)
    last_dispatch_at: int = 0
    last_dispatch_gateway: str = ""
    accept_day: int = -1
    accept_count: int = 0

    def accepts_on(self, day: int) -> int:
        return self.accept_count if self.accept_day == day else 0


@dataclass(frozen=True)
class Pacing:
    """Per-bot limits: time between two hand-outs, and friend-request accepts per UTC day."""

    min_interval_ms: int
    daily_accept_cap: int


@dataclass(frozen=True)
class Choice:
    """The task a bot may get now, its winning claim if any, and the tasks found past expires_at."""

    task: PendingTask | None
    claim: Claim | None
    overdue: list[PendingTask]


class TaskBoard:
    """Pending tasks by bot, with their claims and dispatches; not thread-safe (one event loop)."""

    def __init__(self, pacing: Pacing) -> None:
        self.pacing = pacing
        self.tasks: dict[str, PendingTask] = {}
        self.bots: dict[BotKey, BotState] = {}
        self.claims: dict[str, Claim] = {}
        # task_id -> dispatch time, for tasks handed out and not yet finished.
        self.dispatched: dict[str, int] = {}
        # task_id -> gateway that dispatched it.
        self.dispatched_by: dict[str, str] = {}
        # task_id -> when it finished, in that order; kept for FINISHED_MEMORY_MS to ignore late records.
        self.finished: dict[str, int] = {}
        # task_id -> dispatch time of every dispatch counted for pacing, kept as long as `finished`.
        self.counted_dispatches: dict[str, int] = {}
        # (deadline_ms, task_id) of tasks whose expires_at will pass.
        self.expiry_heap: list[tuple[int, str]] = []

    def __len__(self) -> int:
        return len(self.tasks)

    # Records of the task topic.

    def add_task(self, task: PendingTask) -> None:
        """Insert or replace a task; a record for a finished task_id is ignored."""
        if task.task_id in self.finished:
            return
        previous = self.tasks.get(task.task_id)
        if previous is not None:
            self._unlink(previous)
        self.tasks[task.task_id] = task
        bot = self.bots.setdefault((task.appid, task.bot_wxid), BotState())
        keys = [entry.order for entry in bot.tasks]
        bot.tasks.insert(bisect.bisect(keys, task.order), task)
        if task.expires_at is not None:
            heapq.heappush(self.expiry_heap, (task.expires_at, task.task_id))

    def remove_task(self, task_id: str) -> PendingTask | None:
        """Drop a task (its tombstone arrived) and everything known about it."""
        task = self.tasks.pop(task_id, None)
        if task is not None:
            self._unlink(task)
        self.claims.pop(task_id, None)
        self.dispatched.pop(task_id, None)
        self.dispatched_by.pop(task_id, None)
        return task

    def _unlink(self, task: PendingTask) -> None:
        key = (task.appid, task.bot_wxid)
        bot = self.bots.get(key)
        if bot is None:
            return
        bot.tasks = [entry for entry in bot.tasks if entry.task_id != task.task_id]
        if not bot.tasks and not bot.last_dispatch_at:
            del self.bots[key]

    # Records of the status topic.

    def apply_claim(self, task_id: str, claim_id: str, gateway: str, at: int) -> None:
        """Record a claim as the winner when the task has no unreleased claim yet, else ignore it."""
        if task_id in self.finished or task_id in self.claims or task_id in self.dispatched:
            return
        self.claims[task_id] = Claim(claim_id, gateway, at)

    def apply_release(self, task_id: str, claim_id: str) -> None:
        """Make the task claimable again when the winning claim is released; ignore other releases."""
        claim = self.claims.get(task_id)
        if claim is not None and claim.claim_id == claim_id and task_id not in self.dispatched:
            del self.claims[task_id]

    def apply_dispatch(self, task_id: str, bot_key: BotKey, task_type: int, gateway: str, at: int) -> None:
        """Count a hand-out once, whether it comes from this replica or back from the topic.

        A dispatch read after the task's result still counts for pacing, because replicas may
        read the result first.
        """
        if task_id in self.counted_dispatches:
            return
        self.counted_dispatches[task_id] = at
        if task_id not in self.finished:
            self.dispatched[task_id] = at
            self.dispatched_by[task_id] = gateway
        bot = self.bots.setdefault(bot_key, BotState())
        if at >= bot.last_dispatch_at:
            bot.last_dispatch_at, bot.last_dispatch_gateway = at, gateway
        if task_type == ACCEPT_FRIEND_REQUEST:
            day = at // DAY_MS
            if bot.accept_day != day:
                bot.accept_day, bot.accept_count = day, 0
            bot.accept_count += 1

    def apply_finish(self, task_id: str, now: int) -> None:
        """Retire a task after its result or expiry, so a late record for its id does not revive it."""
        self.finished.setdefault(task_id, now)
        self.remove_task(task_id)

    def forget_finished(self, now: int) -> None:
        """Drop finished ids older than FINISHED_MEMORY_MS, and claims of tasks that never arrived."""
        while self.finished:
            task_id, at = next(iter(self.finished.items()))
            if now - at < FINISHED_MEMORY_MS:
                break
            del self.finished[task_id]
        while self.counted_dispatches:
            task_id, at = next(iter(self.counted_dispatches.items()))
            if now - at < FINISHED_MEMORY_MS or task_id in self.tasks:
                break
            del self.counted_dispatches[task_id]
        for task_id, claim in list(self.claims.items()):
            if task_id not in self.tasks and now - claim.at > FINISHED_MEMORY_MS:
                del self.claims[task_id]
                self.dispatched.pop(task_id, None)
                self.dispatched_by.pop(task_id, None)

    # Decisions.

    def choose(self, appid: str, bot_wxid: str, now: int) -> Choice:
        """Pick the bot's oldest task not dispatched yet that is due at `now` (pacing aside)."""
        bot = self.bots.get((appid, bot_wxid))
        if bot is None:
            return Choice(None, None, [])
        overdue: list[PendingTask] = []
        day = now // DAY_MS
        for task in bot.tasks:
            if task.task_id in self.dispatched:
                continue
            if task.expires_at is not None and task.expires_at <= now:
                overdue.append(task)
                continue
            if task.not_before is not None and task.not_before > now:
                continue
            if task.task_type == ACCEPT_FRIEND_REQUEST and bot.accepts_on(day) >= self.pacing.daily_accept_cap:
                continue
            return Choice(task, self.claims.get(task.task_id), overdue)
        return Choice(None, None, overdue)

    def paced(self, appid: str, bot_wxid: str, now: int) -> bool:
        """Return True when the bot got a task less than the minimum interval ago."""
        bot = self.bots.get((appid, bot_wxid))
        return bot is not None and now - bot.last_dispatch_at < self.pacing.min_interval_ms

    def last_dispatcher(self, appid: str, bot_wxid: str) -> str:
        """Return the gateway that dispatched the bot's latest task, or "" when none did."""
        bot = self.bots.get((appid, bot_wxid))
        return bot.last_dispatch_gateway if bot is not None else ""

    def pop_overdue(self, now: int) -> list[PendingTask]:
        """Tasks whose expires_at passed and that were never dispatched."""
        overdue = []
        while self.expiry_heap and self.expiry_heap[0][0] <= now:
            _, task_id = heapq.heappop(self.expiry_heap)
            task = self.tasks.get(task_id)
            if task is not None and task_id not in self.dispatched and task.expires_at is not None \
                    and task.expires_at <= now:
                overdue.append(task)
        return overdue

    def describe(self) -> dict[str, Any]:
        return {"pending": len(self.tasks), "bots": len(self.bots), "claims": len(self.claims),
                "dispatched": len(self.dispatched)}
