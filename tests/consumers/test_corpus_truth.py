"""The samples corpus through the consumers gives every figure of truth.json."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from consumers.query import run_query
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


def _documented_queries(database: str) -> list[str]:
    text = (Path(__file__).resolve().parents[2] / "docs" / "analytics.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```sql\n(.*?)```", text, flags=re.DOTALL)
    return [block.replace("wehub.", f"{database}.") for block in blocks]


async def test_documented_queries_run(consumer_settings: Settings, samples_dir: Path) -> None:
    await feed_corpus(consumer_settings, samples_dir / "corpus.jsonl")
    await run_until_drained(consumer_settings)
    queries = _documented_queries(str(consumer_settings.clickhouse_database))

    assert len(queries) >= 10
    for sql in queries:
        # Raises QueryError when a documented query does not run on the real tables.
        run_query(consumer_settings, sql)
