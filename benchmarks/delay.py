"""A delaying TCP proxy on loopback: what a registry ``rtt`` seconds away feels like.

``python -m benchmarks.delay --target HOST:PORT --rtt 0.02`` listens on a free
loopback port, prints it, and forwards every connection to ``target``:

- each chunk, either way, is delivered ``rtt / 2`` after it arrived, in order;
- a new connection costs one round trip before the first byte moves (the TCP
  handshake a real network charges; here ``connect()`` returns at once, so the
  client's first bytes are held until ``rtt`` after the accept, then ``rtt / 2``);
- each direction keeps at most ``window`` bytes unacknowledged (a byte counts until
  ``rtt / 2`` after its delivery, when its ACK would be back), like a TCP window:
  one connection moves at most ``window / rtt`` bytes per second. No bandwidth
  limit beyond that, no loss.

It runs in its own process (:func:`delaying_proxy`), so it never competes with the
client under test for the GIL. It stops when its stdin closes or on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

__all__ = ["delaying_proxy", "DEFAULT_WINDOW", "serve"]

#: Unacknowledged bytes per direction of one connection (Linux's default maximum
#: receive window is 6 MiB; tuned hosts go higher).
DEFAULT_WINDOW = 8 * 1024 * 1024
_READ = 256 * 1024


class _Window:
    """Bytes in flight one way; readers wait while it is full."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.used = 0
        self.changed = asyncio.Event()

    async def take(self, nbytes: int) -> None:
        while self.used and self.used + nbytes > self.size:
            self.changed.clear()
            await self.changed.wait()
        self.used += nbytes

    def give(self, nbytes: int) -> None:
        self.used -= nbytes
        self.changed.set()


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, delay: float,
                not_before: float, window: int) -> None:
    """Copy ``reader`` to ``writer``, each chunk ``delay`` after it arrived."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
    flight = _Window(window)

    async def receive() -> None:
        try:
            while True:
                await flight.take(_READ)
                data = await reader.read(_READ)
                flight.give(_READ - len(data))
                if not data:
                    break
                queue.put_nowait((max(loop.time(), not_before) + delay, data))
        finally:
            queue.put_nowait(None)

    async def deliver() -> None:
        while (item := await queue.get()) is not None:
            due, data = item
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
            loop.call_later(delay, flight.give, len(data))
        if writer.can_write_eof():
            writer.write_eof()

    receiving = asyncio.ensure_future(receive())
    try:
        await deliver()
    finally:
        receiving.cancel()


async def _connection(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter,
                      target: tuple[str, int], rtt: float, window: int) -> None:
    loop = asyncio.get_running_loop()
    handshake_done = loop.time() + rtt
    try:
        server_reader, server_writer = await asyncio.open_connection(*target)
    except OSError:
        client_writer.close()
        return
    half = rtt / 2
    pumps = [
        asyncio.ensure_future(_pump(client_reader, server_writer, delay=half,
                                    not_before=handshake_done, window=window)),
        asyncio.ensure_future(_pump(server_reader, client_writer, delay=half, not_before=0.0,
                                    window=window)),
    ]
    try:
        await asyncio.gather(*pumps)
    except (OSError, asyncio.IncompleteReadError):
        pass
    finally:
        for pump in pumps:
            pump.cancel()
        for writer in (client_writer, server_writer):
            with contextlib.suppress(Exception):
                writer.close()


async def serve(target: str, rtt: float, window: int = DEFAULT_WINDOW,
                port: int = 0) -> None:
    """Listen on 127.0.0.1:``port``, print the port, forward to ``target`` until stopped."""
    host, _, port_text = target.rpartition(":")
    address = (host, int(port_text))

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.CancelledError):  # stopping with connections open
            await _connection(reader, writer, address, rtt, window)

    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=256)
    print(server.sockets[0].getsockname()[1], flush=True)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_reader(sys.stdin.fileno(), lambda: sys.stdin.buffer.read1(4096) or stop.set())
    async with server:
        await stop.wait()


@contextlib.contextmanager
def delaying_proxy(target: str, rtt: float, window: int = DEFAULT_WINDOW) -> Iterator[str]:
    """A :func:`serve` process in front of ``target`` (``host:port``); yields its
    ``127.0.0.1:port`` and stops it at the end."""
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.delay", "--target", target, "--rtt", str(rtt),
         "--window", str(window)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        cwd=Path(__file__).resolve().parent.parent)
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        if not line.isdigit():
            raise RuntimeError(f"the delaying proxy did not start (it printed {line!r})")
        yield f"127.0.0.1:{line}"
    finally:
        if process.stdin is not None:
            process.stdin.close()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.terminate()
            process.wait(timeout=5)


def main(argv: list[str] | None = None) -> None:
    """The proxy's command line."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.delay", description=__doc__)
    parser.add_argument("--target", required=True, help="host:port to forward to")
    parser.add_argument("--rtt", type=float, required=True, help="round-trip time, seconds")
    parser.add_argument("--window", type=int, default=DEFAULT_WINDOW,
                        help="unacknowledged bytes per direction of a connection")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0: any)")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.target, args.rtt, args.window, args.port))


if __name__ == "__main__":
    main()
