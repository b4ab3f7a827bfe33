"""The pending-task view's rules: order, claims, pacing, not_before and expires_at (no services)."""

from __future__ import annotations

from gateway.tasks_board import DAY_MS, Pacing, PendingTask, TaskBoard

APPID = "wh_app"
BOT = "wxid_bot"
NOW = 1_800_000_000_000


def task(task_id: str, created_at: int = NOW - 1000, task_type: int = 1, bot: str = BOT,
         not_before: int | None = None, expires_at: int | None = None) -> PendingTask:
    return PendingTask(task_id, APPID, bot, task_type, "{}", created_at, not_before, expires_at)


def board(min_interval_ms: int = 0, daily_accept_cap: int = 200) -> TaskBoard:
    return TaskBoard(Pacing(min_interval_ms, daily_accept_cap))


def chosen(view: TaskBoard, now: int = NOW, bot: str = BOT) -> str | None:
    picked = view.choose(APPID, bot, now).task
    return picked.task_id if picked else None


def test_oldest_task_first_whatever_the_arrival_order() -> None:
    view = board()
    view.add_task(task("b", created_at=NOW - 10))
    view.add_task(task("a", created_at=NOW - 20))
    view.add_task(task("c", created_at=NOW - 10))
    assert chosen(view) == "a"
    view.apply_dispatch("a", (APPID, BOT), 1, "g1", NOW)
    assert chosen(view) == "b"


def test_task_goes_only_to_its_own_bot() -> None:
    view = board()
    view.add_task(task("a", bot="wxid_other"))
    assert chosen(view) is None
    assert view.choose("wh_other_app", "wxid_other", NOW).task is None
    assert chosen(view, bot="wxid_other") == "a"


def test_first_claim_wins_and_later_claims_are_ignored() -> None:
    view = board()
    view.add_task(task("a"))
    view.apply_claim("a", "claim-1", "g1", NOW)
    view.apply_claim("a", "claim-2", "g2", NOW + 1)
    assert view.claims["a"].claim_id == "claim-1"


def test_release_by_winner_makes_task_claimable_again() -> None:
    view = board()
    view.add_task(task("a"))
    view.apply_claim("a", "claim-1", "g1", NOW)
    view.apply_release("a", "claim-2")
    assert view.claims["a"].claim_id == "claim-1"
    view.apply_release("a", "claim-1")
    assert "a" not in view.claims
    view.apply_claim("a", "claim-3", "g2", NOW + 2)
    assert view.claims["a"].claim_id == "claim-3"


def test_claim_arriving_before_its_task_still_counts() -> None:
    view = board()
    view.apply_claim("a", "claim-1", "g1", NOW)
    view.add_task(task("a"))
    assert view.choose(APPID, BOT, NOW).claim is not None


def test_dispatched_task_is_never_chosen_again() -> None:
    view = board()
    view.add_task(task("a"))
    view.apply_dispatch("a", (APPID, BOT), 1, "g1", NOW)
    view.apply_dispatch("a", (APPID, BOT), 1, "g1", NOW)
    assert chosen(view, NOW + 10) is None


def test_finished_task_ignores_late_record_of_same_id() -> None:
    view = board()
    view.add_task(task("a"))
    view.apply_finish("a", NOW)
    view.add_task(task("a"))
    assert chosen(view) is None
    view.forget_finished(NOW + 2 * 3_600_000)
    assert "a" not in view.finished


def test_minimum_interval_between_tasks_of_a_bot() -> None:
    view = board(min_interval_ms=2000)
    view.add_task(task("a"))
    view.add_task(task("b"))
    assert not view.paced(APPID, BOT, NOW)
    view.apply_dispatch("a", (APPID, BOT), 1, "g1", NOW)
    assert view.paced(APPID, BOT, NOW + 1999)
    assert not view.paced(APPID, BOT, NOW + 2000)


def test_daily_accept_cap_holds_back_friend_accepts_only() -> None:
    view = board(daily_accept_cap=2)
    for number in range(3):
        view.add_task(task(f"accept{number}", created_at=NOW - 100 + number, task_type=13))
    view.add_task(task("send", created_at=NOW, task_type=1))
    view.apply_dispatch("accept0", (APPID, BOT), 13, "g1", NOW)
    view.apply_dispatch("accept1", (APPID, BOT), 13, "g1", NOW)
    assert chosen(view) == "send"
    next_day = (NOW // DAY_MS + 1) * DAY_MS
    assert chosen(view, next_day) == "accept2"


def test_not_before_delays_a_task_without_blocking_later_ones() -> None:
    view = board()
    view.add_task(task("later", created_at=NOW - 20, not_before=NOW + 5000))
    view.add_task(task("now", created_at=NOW - 10))
    assert chosen(view) == "now"
    view.apply_dispatch("now", (APPID, BOT), 1, "g1", NOW)
    assert chosen(view, NOW + 4999) is None
    assert chosen(view, NOW + 5000) == "later"


def test_task_past_expires_at_is_never_chosen_and_reported_overdue() -> None:
    view = board()
    view.add_task(task("old", created_at=NOW - 20, expires_at=NOW - 1))
    view.add_task(task("fresh", created_at=NOW - 10, expires_at=NOW + 1000))
    choice = view.choose(APPID, BOT, NOW)
    assert choice.task is not None
    assert choice.task.task_id == "fresh"
    assert [overdue.task_id for overdue in choice.overdue] == ["old"]
    assert [overdue.task_id for overdue in view.pop_overdue(NOW)] == ["old"]
    assert view.pop_overdue(NOW + 2000) == [view.tasks["fresh"]]


def test_tombstone_removes_task_and_its_claim() -> None:
    view = board()
    view.add_task(task("a"))
    view.apply_claim("a", "claim-1", "g1", NOW)
    view.remove_task("a")
    assert len(view) == 0
    assert "a" not in view.claims
    assert chosen(view) is None


def test_dispatch_read_after_result_still_paces_bot() -> None:
    view = board(min_interval_ms=2000, daily_accept_cap=1)
    view.add_task(task("accept", task_type=13))
    view.apply_finish("accept", NOW)
    view.apply_dispatch("accept", (APPID, BOT), 13, "g2", NOW)
    view.apply_dispatch("accept", (APPID, BOT), 13, "g2", NOW)
    assert view.paced(APPID, BOT, NOW + 1000)
    assert view.last_dispatcher(APPID, BOT) == "g2"
    assert view.bots[(APPID, BOT)].accepts_on(NOW // DAY_MS) == 1
