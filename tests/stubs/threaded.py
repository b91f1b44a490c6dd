"""Run a stub server on its own event loop in a background thread.

Benchmarks use this so the stub's own work does not share the event loop
(and its scheduling delays) with the bot being measured.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from tests.stubs.openai_server import Script, StubOpenAI


@contextmanager
def stub_in_thread(script: Script) -> Iterator[StubOpenAI]:
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder: dict[str, StubOpenAI] = {}

    def serve() -> None:
        asyncio.set_event_loop(loop)
        stub = StubOpenAI(script)
        loop.run_until_complete(stub.start())
        holder["stub"] = stub
        ready.set()
        loop.run_forever()
        loop.run_until_complete(stub.stop())
        loop.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    if not ready.wait(10):
        raise RuntimeError("stub server did not start")
    try:
        yield holder["stub"]
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
