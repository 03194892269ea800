"""The end-to-end suite records every AWS operation its handlers make; tests/e2e/test_iam.py runs
last and checks each against template.yaml."""
from __future__ import annotations

import pytest

from ripple.aws import observe_calls
from tests.e2e.aws_calls import Recorder, worker_threads_keep_context


def pytest_collection_modifyitems(items):
    """The IAM test goes last, so it sees the calls of every other end-to-end test."""
    items.sort(key=lambda item: item.module.__name__.endswith(".test_iam"))


@pytest.fixture(scope="session", autouse=True)
def suite_calls():
    recorder = Recorder()
    undo = observe_calls(recorder)
    with worker_threads_keep_context():
        yield recorder
    undo()
