"""The samples corpus through the consumers gives every figure of truth.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.consumers import truth
from tests.consumers.helpers import run_until_drained
from tests.corpus_feed import feed_corpus
from wehub.settings import Settings

pytestmark = pytest.mark.services


@pytest.fixture
def consumer_settings(service_settings: Settings) -> Settings:
    return service_settings.with_overrides(batch_max_wait_ms=200)


def _assert_matches(settings: Settings, samples_dir: Path) -> None:
    expected = truth.expected(json.loads((samples_dir / "truth.json").read_text(encoding="utf-8")))
    found = truth.figures(settings)
    for name, value in expected.items():
        assert found[name] == value, name


@pytest.mark.parametrize("split_contacts", [False, True], ids=["whole_contacts", "split_contacts"])
async def test_corpus_figures_match_truth(consumer_settings: Settings, samples_dir: Path,
                                          split_contacts: bool) -> None:
    await feed_corpus(consumer_settings, samples_dir / "corpus.jsonl", split_contacts=split_contacts)

    await run_until_drained(consumer_settings)

    _assert_matches(consumer_settings, samples_dir)


async def test_corpus_replayed_twice_leaves_same_figures(consumer_settings: Settings, samples_dir: Path) -> None:
    await feed_corpus(consumer_settings, samples_dir / "corpus.jsonl")
    await run_until_drained(consumer_settings)
    await feed_corpus(consumer_settings, samples_dir / "corpus.jsonl")

    await run_until_drained(consumer_settings)

    _assert_matches(consumer_settings, samples_dir)
