"""The garbage collector stays off while any runner of the process works on a batch."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from consumers.runner import _CollectorPause


@pytest.fixture
def collector_on() -> Iterator[None]:
    was_enabled = gc.isenabled()
    gc.enable()
    yield
    if not was_enabled:
        gc.disable()


@pytest.mark.usefixtures("collector_on")
def test_collector_off_until_last_holder_releases() -> None:
    pause = _CollectorPause()

    pause.hold()
    pause.hold()
    assert not gc.isenabled()
    pause.release()
    assert not gc.isenabled()
    pause.release()
    assert gc.isenabled()


def test_collector_left_off_when_it_was_off_before() -> None:
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        pause = _CollectorPause()
        pause.hold()
        pause.release()

        assert not gc.isenabled()
    finally:
        if was_enabled:
            gc.enable()
