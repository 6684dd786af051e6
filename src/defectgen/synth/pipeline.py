"""The synthesis pipeline's threads: batches composed ahead of the generator (`prefetched`) and
items encoded and written beside it (`Writer`), each bounded so memory stays flat."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

PREFETCH_BATCHES = 2  # batches composed ahead of the generator


WRITER_THREADS = 3  # encoding and writing beside the generator


WRITER_QUEUE = 2 * WRITER_THREADS  # items painted but not yet written, at most


def prefetched(iterable, depth: int) -> Iterator:
    """Iterate `iterable` in a background thread, at most `depth` items ahead of the consumer;
    an exception in it is raised in the consumer. Stopping early stops the thread."""
    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def put(entry) -> bool:
        """Wait for room, or give up once the consumer has stopped."""
        while not stop.is_set():
            try:
                slots.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce():
        try:
            for value in iterable:
                if not put((value, None)):
                    return
            put((done, None))
        except BaseException as err:  # handed to the consumer
            put((done, err))

    thread = threading.Thread(target=produce, name="synth-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            value, error = slots.get()
            if value is done:
                if error is not None:
                    raise error
                return
            yield value
    finally:
        stop.set()
        thread.join()


class Writer:
    """Encodes and writes items in `WRITER_THREADS` threads while the generator paints the next
    batch; at most `WRITER_QUEUE` items wait. `on_written(record)` runs (serialised) after an
    item's files are in place; the first failure is raised in the caller."""

    def __init__(self, on_written):
        self.on_written = on_written
        self.pool = ThreadPoolExecutor(WRITER_THREADS, thread_name_prefix="synth-write")
        self.slots = threading.BoundedSemaphore(WRITER_QUEUE)
        self.lock = threading.Lock()
        self.errors: list[BaseException] = []

    def submit(self, write, *args) -> None:
        self._raise()
        self.slots.acquire()

        def task():
            try:
                record = write(*args)
                with self.lock:
                    if not self.errors:
                        self.on_written(record)
            except BaseException as err:
                with self.lock:
                    self.errors.append(err)
            finally:
                self.slots.release()

        self.pool.submit(task)

    def _raise(self) -> None:
        with self.lock:
            if self.errors:
                raise self.errors[0]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.pool.shutdown(wait=True)
        if exc[0] is None:
            self._raise()
        return False
