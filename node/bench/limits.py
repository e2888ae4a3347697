"""The physical limits ``govnode bench delivery`` sets its figures beside, each
measured the way the node uses the thing: raw PyNaCl seal + sign + verify + open of
one 4 KiB body on one core; 4 KiB rows inserted into SQLite (WAL, synchronous=FULL)
in transactions of 256; msgpack POSTs of 256 items to a trivial aiohttp server in
its own process, one request in flight.

Run as a module (``python -m node.bench.limits post-server``) this file is that
trivial server: it prints its port, then answers until terminated.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import msgpack
import nacl.public
import nacl.signing
from aiohttp import web

from node.bench.measure import rate
from node.bench.processes import REPO, child_env, terminate
from node.clock import new_id

BODY_BYTES = 4096
BATCH_ITEMS = 256  # SQLite transaction size and POST batch size of the raw limits


def crypto_ceiling(seconds: float) -> float:
    """Documents per second through raw seal + sign + verify + open of a 4 KiB body."""
    body = os.urandom(BODY_BYTES)
    recipient = nacl.public.PrivateKey.generate()
    sealer, opener = nacl.public.SealedBox(recipient.public_key), nacl.public.SealedBox(recipient)
    signing_key = nacl.signing.SigningKey.generate()
    verify_key = signing_key.verify_key

    def one_document() -> bytes:
        signed = signing_key.sign(sealer.encrypt(body))
        return opener.decrypt(verify_key.verify(signed))

    return rate(one_document, seconds)


def sqlite_batched_rows_per_s(temp_dir: Path, seconds: float) -> float:
    """4 KiB rows with a time-ordered 16-byte key (as the node's message ids) inserted
    in transactions of 256, WAL, synchronous=FULL, into a rowid table as the node's
    outbox is."""
    path = temp_dir / "raw-sqlite.db"
    for leftover in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        leftover.unlink(missing_ok=True)
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        connection.execute("CREATE TABLE rows (id BLOB NOT NULL UNIQUE, data BLOB NOT NULL)")
        payload = os.urandom(BODY_BYTES)

        def one_batch() -> None:
            connection.execute("BEGIN IMMEDIATE")
            connection.executemany("INSERT INTO rows VALUES (?, ?)",
                                   [(new_id(), payload) for _ in range(BATCH_ITEMS)])
            connection.execute("COMMIT")

        return rate(one_batch, seconds) * BATCH_ITEMS
    finally:
        connection.close()


class PostServer:
    """The trivial aiohttp server of the raw POST limit, in its own process."""

    async def __aenter__(self) -> "PostServer":
        self.process = subprocess.Popen(
            [sys.executable, "-m", "node.bench.limits", "post-server"],
            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, cwd=REPO, env=child_env())
        line = await asyncio.wait_for(asyncio.to_thread(self.process.stdout.readline), 30)
        if not line.strip().isdigit():
            self.process.kill()
            raise RuntimeError(f"the raw aiohttp server did not start: {line!r}")
        self.url = f"http://127.0.0.1:{int(line)}/post"
        self.session = aiohttp.ClientSession()
        self.items = [os.urandom(BODY_BYTES) for _ in range(BATCH_ITEMS)]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.session.close()
        terminate(self.process)

    async def items_per_s(self, seconds: float) -> float:
        count, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds or count == 0:
            body = msgpack.packb({"from": "gd", "frames": self.items}, use_bin_type=True)
            async with self.session.post(self.url, data=body,
                                         headers={"Content-Type": "application/msgpack"}) as reply:
                answer = msgpack.unpackb(await reply.read())
            count += len(answer["accepted"])
        return count / (time.perf_counter() - started)


async def post_server_main() -> None:
    async def receive(request: web.Request) -> web.Response:
        batch = msgpack.unpackb(await request.read())
        accepted = [item[:16] for item in batch["frames"]]
        return web.Response(body=msgpack.packb({"accepted": accepted, "rejected": []}),
                            content_type="application/msgpack")

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/post", receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(runner.addresses[0][1], flush=True)
    await asyncio.Event().wait()  # until the bench terminates this process


if __name__ == "__main__" and sys.argv[1:] == ["post-server"]:
    asyncio.run(post_server_main())
