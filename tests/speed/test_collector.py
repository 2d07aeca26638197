"""The collector tuning relies on CPython's three-generation collector (3.11-3.13)."""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator

import pytest

from quart_auth_app.speed.collector import (
    OLDER_COLLECTION_THRESHOLD,
    YOUNG_COLLECTION_THRESHOLD,
    tune_collector,
)


@pytest.fixture
def restored_collector() -> Iterator[None]:
    before = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_the_interpreter_has_the_collector_this_tuning_was_measured_on(
    restored_collector: None,
) -> None:
    # CPython 3.14 replaced the generations with an incremental collector: the thresholds mean
    # something else there, and the tuning must be measured again before it is kept.
    assert sys.version_info < (3, 14), "re-measure speed/collector.py on this interpreter"
    assert len(gc.get_count()) == 3
    tune_collector()
    assert gc.get_threshold() == (
        YOUNG_COLLECTION_THRESHOLD,
        OLDER_COLLECTION_THRESHOLD,
        OLDER_COLLECTION_THRESHOLD,
    )
    assert gc.get_freeze_count() > 0
