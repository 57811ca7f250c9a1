"""The Celery application's process hooks."""

import gc

import pytest
from celery.signals import worker_process_init, worker_ready

import mailweb.celery  # noqa: F401 - connects the hooks


@pytest.mark.django_db  # worker_ready also records the worker's heartbeat (mailweb.tasks)
def test_worker_start_freezes_startup_objects_and_later_garbage_is_still_collected():
    try:
        for signal in (worker_ready, worker_process_init):
            gc.unfreeze()
            signal.send(sender=None)
            assert gc.get_freeze_count() > 10_000, signal.name

        cycle: list[object] = []
        cycle.append(cycle)
        del cycle
        assert gc.collect() >= 1
    finally:
        gc.unfreeze()
