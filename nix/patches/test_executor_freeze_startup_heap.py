"""Tests for freezing an executor worker's startup heap.

Goes with skypilot-0.14.1-executor-freeze-startup-heap.patch; upstream it would live in
tests/unit_tests/test_sky/server/requests/. Run with the patched SkyPilot installed:

    pytest nix/patches/test_executor_freeze_startup_heap.py
"""
import gc
import threading
import weakref

import pytest

from sky.server import metrics as metrics_lib
from sky.server import plugins
from sky.server.requests import executor


@pytest.fixture
def initialized_worker(monkeypatch):
    """Runs executor_initializer in this process, without its side effects on the
    test runner (plugins, the atexit hook, the process monitor thread, the title)."""
    monkeypatch.setattr(plugins, 'load_plugins', lambda *args, **kwargs: None)
    monkeypatch.setattr(metrics_lib, 'register_multiproc_cleanup_atexit',
                        lambda: None)
    monkeypatch.setattr(executor.setproctitle, 'setproctitle', lambda title: None)

    class _NotStarted:

        def __init__(self, *args, **kwargs):
            pass

        def start(self):
            pass

    monkeypatch.setattr(threading, 'Thread', _NotStarted)
    gc.collect()
    tracked_before = len(gc.get_objects())
    executor.executor_initializer('short')
    yield tracked_before
    gc.unfreeze()


def test_startup_heap_is_frozen(initialized_worker):
    tracked_before = initialized_worker
    # The imports of the worker are no longer walked by a collection.
    assert gc.get_freeze_count() >= tracked_before * 0.9
    assert len(gc.get_objects()) < tracked_before * 0.1


def test_full_collection_after_a_request_walks_only_new_objects(
        initialized_worker):
    del initialized_worker
    request_objects = [{'cluster': i} for i in range(1000)]
    walked = len(gc.get_objects())
    # What release_memory's gc.collect() walks: the objects allocated since the
    # worker started, not the worker's modules.
    assert walked < 10 * len(request_objects)
    del request_objects


def test_garbage_made_after_the_freeze_is_still_collected(initialized_worker):
    del initialized_worker

    class Node:
        pass

    a, b = Node(), Node()
    a.other, b.other = b, a  # a reference cycle, freed only by the collector
    gone = weakref.ref(a)
    del a, b
    assert gone() is not None
    gc.collect()
    assert gone() is None


def test_frozen_objects_are_still_freed_by_reference_counting(
        initialized_worker):
    del initialized_worker
    gc.unfreeze()

    class Held:
        pass

    held = [Held()]
    gone = weakref.ref(held[0])
    gc.freeze()
    held.clear()
    assert gone() is None
