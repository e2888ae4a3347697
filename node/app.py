"""Wiring: one ``Node`` is one running govnode, from its data directory.

Theory of operation: ``start`` opens the database (migrating it), loads the
directory into memory, binds the HTTP server and starts the node's life in the
background: wait for enrollment if there is no certificate yet (polling the parent),
publish the endpoint record, then run gossip, the status beacon, the pick-up of rows
other processes (the CLI) committed, and the periodic flush of peer contacts, until
``stop``. Nothing here knows a protocol rule; it only connects the pieces.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import shutil
import time
from pathlib import Path

import aiohttp
from aiohttp import web

from protocol import ids
from protocol.directory import EndpointAnnouncement, Record, StatusBeacon, sign_record
from protocol.errors import ProtocolError
from protocol.keys import NodeKeys

from node import __version__, enrollment
from node.clock import now_ms, sleep_unless
from node.contacts import ContactBook
from node.context import NodeContext
from node.datadir import DataDir
from node.delivery import Delivery, DeliverySettings
from node.discovery_hints import DiscoveryHints
from node.gossip import Gossip
from node.http_api import MAX_TRANSFER_BYTES, ReplayGuard, add_routes
from node.http_errors import REJECTIONS, refusals_middleware
from node.inbound import MAX_CLOCK_SKEW_MS, REPLAY_WINDOW_MS, Inbound
from node.member_directory import MemberDirectory
from node.metrics import NodeMetrics
from node.store.db import data_version, open_database, transaction
from node.store.directory_store import DirectoryStore
from node.store.enrollment_store import EnrollmentStore
from node.store.state_store import StateStore

log = logging.getLogger("govnode.node")
CONTACT_FLUSH_MS = 5000  # last contacts reach SQLite (for `govnode status`) this often
FORGET_SEEN_MS = 3600 * 1000  # dedupe entries past the replay window are dropped this often
FULL_CHECK_MS = 2000  # PRAGMA data_version at least this often, whatever the WAL file says
CHECKPOINT_MS = 1000  # the WAL is copied into the database file at most this often
WAL_RESTART_BYTES = 64 * 1024 * 1024  # a WAL this big is made to start over (and is cut)
# [delivery] settings read where they apply (receiving, sending), not by the workers.
NOT_FOR_THE_WORKERS = {"max_attachment_bytes", "crypto_threads"}


class Node:
    def __init__(self, data_dir: Path | str, *, passphrase: str | None = None,
                 discovery: bool | None = None) -> None:
        self.data = DataDir(Path(data_dir))
        self.config = self.data.load_config()
        self.keys: NodeKeys = self.data.load_keys(self.config, passphrase)
        self._passphrase = passphrase
        self.id = self.config.node_id
        self.discovery_enabled = self.config.discovery_enabled if discovery is None else discovery
        self.metrics = NodeMetrics()
        self.replay_guard = ReplayGuard()
        self.started_at = time.monotonic()
        self.urls: tuple[str, ...] = ()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self.enrolled_event = asyncio.Event()
        self.links = None  # a simulator's link policy (node.sim.links); None in production
        self._url_peers: dict[str, str] = {}

    # --- lifecycle --------------------------------------------------------------

    @property
    def stopping(self) -> bool:
        """True once ``stop`` or ``crash`` began: nothing new should be asked of it."""
        return self._stop.is_set()

    async def start(self) -> None:
        _collect_garbage_less_often()
        self.db = await open_database(self.data.database_file,
                                      secure_delete=self.config.secure_delete)
        self.state = StateStore(self.db)
        self.enrollments = EnrollmentStore(self.db)
        self.directory = MemberDirectory(DirectoryStore(self.db),
                                         trust_anchor=self.config.trust_anchor)
        await self.directory.load()
        self._data_version = await data_version(self.db)
        self.contacts = ContactBook(self.state)
        await self.contacts.load()
        self.session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=30, connect=5),
            trace_configs=[self._link_trace()])
        self.hints = DiscoveryHints(self.directory)
        self.gossip = Gossip(node_id=self.id, keys=self.keys, directory=self.directory,
                             settings=self.config.gossip, session=lambda: self.session,
                             peer_urls=self.peer_urls, contacts=self.contacts,
                             metrics=self.metrics)
        self.directory.on_new_records(self._on_directory_change)
        self.context = NodeContext(self.id, self.keys, self.config, self.directory, self.db)
        if self.data.previous_keys_file.exists():
            self.context.use_keys(self.keys, (self.data.load_keys(
                self.config, self._passphrase, previous=True),))
        self.delivery = Delivery(self.context, session=lambda: self.session,
                                 peer_urls=self.peer_urls,
                                 settings=DeliverySettings(**{
                                     k: v for k, v in self.config.delivery.items()
                                     if k not in NOT_FOR_THE_WORKERS}),
                                 on_result=self._delivery_result)
        self.context.wake = self.delivery.wake
        self.inbound = Inbound(self.context)
        self.contacts.on_success(self.delivery.neighbour_alive)
        if not self.enrolled and self.data.next_keys_file.exists():
            self._adopt_next_keys()  # a re-key certified while the node was down
        await self._serve()
        if self.enrolled:
            self.enrolled_event.set()
        self._tasks.append(asyncio.create_task(self._live(), name=f"{self.id} life"))
        log.info("node %s listening on %s (enrolled: %s)", self.id, ", ".join(self.urls),
                 self.enrolled)

    async def _serve(self) -> None:
        app = web.Application(middlewares=[refusals_middleware],
                              client_max_size=MAX_TRANSFER_BYTES + 64 * 1024)
        app[REJECTIONS] = lambda code: self.metrics.rejections.labels(code).inc()
        add_routes(app, self)
        self.app = app
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.config.host, self.config.port)
        await site.start()
        self.port = self.runner.addresses[0][1]
        self.urls = self.config.public_urls or (f"http://{self.config.host}:{self.port}",)

    async def crash(self) -> None:
        """Stop as SIGKILL would (for the simulator): no flush, no goodbye. What was
        committed stays on disk; an open transaction is lost with the connection."""
        self._stop.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.delivery.stop()
        await self.runner.cleanup()
        await self.session.close()
        await self.db.close()

    def _link_trace(self) -> aiohttp.TraceConfig:
        """Lets a simulator's ``links`` policy cut, drop or delay this node's requests."""
        async def on_request_start(session, context, params) -> None:
            if self.links is not None:
                await self.links.before_request(self.id, self._url_peers.get(
                    f"{params.url.scheme}://{params.url.host}:{params.url.port}"))

        trace = aiohttp.TraceConfig()
        trace.on_request_start.append(on_request_start)
        return trace

    async def stop(self) -> None:
        self._stop.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await self.hints.stop()
        await self.delivery.stop()
        try:
            await self.contacts.flush()
        except Exception:  # stopping must finish even if the disk is unhappy
            log.exception("could not save peer contacts")
        await self.runner.cleanup()
        await self.session.close()
        await self.db.close()

    async def _live(self) -> None:
        if self.discovery_enabled:  # announce at once: peers decide whether to trust it
            await self.hints.start(self)
        if not self.enrolled:
            await self._await_certificate(self.keys)
            if not self.enrolled:  # rejected, or stopping
                return
        await self.publish_endpoint()
        await self.delivery.start()
        if self.data.next_keys_file.exists():
            self._tasks.append(asyncio.create_task(self._await_rekey(), name=f"{self.id} rekey"))
        await asyncio.gather(self.gossip.run(self._stop), self._beacon_loop(),
                             self._housekeeping_loop(), self._checkpoint_loop())

    # --- enrollment -------------------------------------------------------------

    @property
    def enrolled(self) -> bool:
        certificate = self.directory.certificate(self.id)
        return certificate is not None and certificate.keys == self.keys.public

    async def _await_certificate(self, keys: NodeKeys) -> None:
        """Poll the parent until it approves (or rejects) our request for ``keys``."""
        url = (f"{self.config.parent_url}/v1/enroll/{self.id}/{keys.fingerprint}")
        while not self._stop.is_set():
            if self.directory.certificate(self.id) and \
                    self.directory.certificate(self.id).keys == keys.public:
                break
            try:
                async with self.session.get(url) as response:
                    answer = enrollment.EnrollmentAnswer.decode(await response.read())
                if answer.status == "approved":
                    await enrollment.install_answer(answer, keys=keys, own_id=self.id,
                                                    directory=self.directory, now_ms=now_ms())
                    break
                if answer.status == "unknown":  # never arrived, or the parent lost it
                    await self._send_enrollment_request(keys)
                if answer.status == "rejected":
                    log.error("enrollment rejected by %s: %s. This node keeps serving but will "
                              "not join; create it again in a new data directory to ask anew.",
                              ids.parent(self.id), answer.reason)
                    return
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ProtocolError,
                    enrollment.EnrollmentError) as error:
                log.info("waiting for enrollment at %s: %s", url, error)
            await sleep_unless(self._stop, self.config.enrollment_poll_ms / 1000)
        self.enrolled_event.set()

    async def _await_rekey(self) -> None:
        next_keys = self.data.load_keys(self.config, self._passphrase, next_keys=True)
        await self._await_certificate(next_keys)
        self._adopt_next_keys()

    async def _send_enrollment_request(self, keys: NodeKeys) -> None:
        request = enrollment.make_request(keys, node_id=self.id, name=self.config.name,
                                          level=self.config.level, division=self.config.division,
                                          now_ms=now_ms())
        async with self.session.post(f"{self.config.parent_url}/v1/enroll", data=request.encode(),
                                     headers={"Content-Type": "application/msgpack"}) as response:
            log.info("enrollment request sent to %s: HTTP %d", self.config.parent_url,
                     response.status)

    def _on_directory_change(self, records: list[Record]) -> None:
        own = self.directory.certificate(self.id)
        if own is not None and own.keys != self.keys.public and self.data.next_keys_file.exists():
            self._adopt_next_keys()

    def _adopt_next_keys(self) -> None:
        """Our re-key was approved: the new keys become the node's keys."""
        try:
            next_keys = self.data.load_keys(self.config, self._passphrase, next_keys=True)
        except ProtocolError as error:
            log.error("cannot load the new keys after re-key: %s", error)
            return
        if self.directory.certificate(self.id).keys != next_keys.public:
            return
        os.replace(self.data.keys_file, self.data.previous_keys_file)
        os.replace(self.data.next_keys_file, self.data.keys_file)
        self.context.use_keys(next_keys, (self.keys,))
        self.keys = self.gossip.keys = next_keys
        log.warning("re-key complete: now signing with %s", next_keys.fingerprint)
        # Our children's certificates were signed with the old key: sign them anew.
        self._tasks.append(asyncio.create_task(self._recertify_children()))

    async def _recertify_children(self) -> None:
        issued = await enrollment.recertify_children(self.keys, own_id=self.id,
                                                     directory=self.directory, now_ms=now_ms())
        if issued:
            log.warning("re-issued %d children's certificates under the new key", len(issued))

    # --- own records --------------------------------------------------------------

    async def publish_endpoint(self) -> None:
        seq = await self.state.next_counter("endpoint_seq")
        announcement = EndpointAnnouncement(self.id, seq, tuple(self.urls), now_ms())
        await self.directory.accept([sign_record(self.keys, announcement)], now_ms())

    async def publish_status(self) -> None:
        seq = await self.state.next_counter("status_seq")
        beacon = StatusBeacon(
            subject=self.id, seq=seq, at=now_ms(), version=__version__,
            uptime_s=int(time.monotonic() - self.started_at),
            queue_depths=await self.context.outbox.depths(),
            last_contact=dict(self.contacts.last_success),
            directory_root=self.directory.digest.root.hex(),
            disk_free=shutil.disk_usage(self.data.path).free,
            stats={"records": len(self.directory), "members": len(self.directory.members(now_ms()))})
        await self.directory.accept([sign_record(self.keys, beacon)], now_ms())

    async def _beacon_loop(self) -> None:
        while not self._stop.is_set():
            try:
                await self.publish_status()
            except ProtocolError as error:  # e.g. our own certificate expired or revoked
                log.error("cannot publish status: %s %s", error.code, error.detail)
            await sleep_unless(self._stop, self.config.gossip.status_interval_ms / 1000)

    async def _housekeeping_loop(self) -> None:
        # Every gossip interval: has another process (the CLI) committed? The WAL file's
        # size and mtime are looked at first, the database asked only when they moved
        # (or every FULL_CHECK_MS): hundreds of nodes in one simulator process each
        # asking SQLite five times a second is a load of its own. Contacts are flushed
        # every CONTACT_FLUSH_MS, and old dedupe entries dropped every FORGET_SEEN_MS.
        wal, wal_seen, checked_at, flushed_at = self.data.wal_file, None, 0.0, 0.0
        forgotten_at = -FORGET_SEEN_MS / 1000  # once at start, then every FORGET_SEEN_MS
        while not self._stop.is_set():
            now = time.monotonic()
            try:
                wal_now = _file_signature(wal)
                if wal_now != wal_seen or now - checked_at >= FULL_CHECK_MS / 1000:
                    wal_seen, checked_at = wal_now, now
                    version = await data_version(self.db)
                    if version != self._data_version:  # another connection committed
                        await self.directory.refresh()
                        await self.delivery.start()
                        self._data_version = version
                if now - flushed_at >= CONTACT_FLUSH_MS / 1000:
                    flushed_at = now
                    await self.contacts.flush()
                if now - forgotten_at >= FORGET_SEEN_MS / 1000:
                    forgotten_at = now
                    await self.forget_old_frame_ids()
            except Exception:  # e.g. another process held the lock past LOCK_WAIT_S: again
                log.exception("housekeeping failed; trying again next interval")
                wal_seen = None
            await sleep_unless(self._stop, self.config.gossip.interval_ms / 1000)

    async def forget_old_frame_ids(self) -> int:
        """Drop the dedupe entries no replay could still match: a frame is refused by
        age once older than the replay window (created at most the clock skew after we
        first took it), so its id need not be remembered longer. Returns how many."""
        cutoff = now_ms() - REPLAY_WINDOW_MS - MAX_CLOCK_SKEW_MS
        async with transaction(self.db):
            return await self.context.outbox.forget_seen_before(cutoff)

    async def _checkpoint_loop(self) -> None:
        """Fold the WAL into the database file (in a thread) at most every CHECKPOINT_MS,
        when it moved; a loop of its own, so a slow disk never delays housekeeping."""
        wal, checkpointed = self.data.wal_file, None
        while not self._stop.is_set():
            wal_now = _file_signature(wal)
            if wal_now != checkpointed:
                checkpointed = wal_now
                try:
                    await self.db.checkpoint(
                        restart=wal_now is not None and wal_now[1] > WAL_RESTART_BYTES)
                except Exception:  # e.g. the disk is full: the WAL waits for the next try
                    log.exception("checkpoint failed; trying again later")
            await sleep_unless(self._stop, CHECKPOINT_MS / 1000)

    def _delivery_result(self, hop: str, ok: bool, error: str) -> None:
        if ok:
            self.contacts.succeeded(hop, now_ms())
        else:
            self.contacts.failed(hop, now_ms(), error)

    # --- peers ------------------------------------------------------------------

    def peer_urls(self, peer: str) -> tuple[str, ...]:
        endpoint = self.directory.endpoint(peer)
        if endpoint is not None:
            urls = endpoint.urls
        elif peer == ids.parent(self.id) and self.config.parent_url:
            urls = (self.config.parent_url,)
        else:
            urls = self.hints.urls_for(peer)
        if self.links is not None and urls:
            self._url_peers[urls[0].rstrip("/")] = peer
        return urls

    # --- health -----------------------------------------------------------------

    def health(self) -> dict:
        certificate = self.directory.certificate(self.id)
        now = now_ms()
        return {
            "id": self.id, "name": self.config.name, "level": self.config.level.value,
            "version": __version__, "status": "ok" if self.enrolled else "not_enrolled",
            "enrolled": self.enrolled, "fingerprint": self.keys.fingerprint,
            "uptime_s": int(time.monotonic() - self.started_at),
            "certificate": {"serial": certificate.serial, "not_after": certificate.not_after}
            if certificate else None,
            "directory": {"records": len(self.directory), "root": self.directory.digest.root.hex(),
                          "members": len(self.directory.members(now))},
            "gossip": {"rounds": self.gossip.rounds, "skipped_rounds": self.gossip.skipped_rounds,
                       "last_insync_round_bytes": self.gossip.last_insync_bytes},
            "last_contact": dict(sorted(self.contacts.last_success.items())),
        }

    def update_gauges(self) -> None:
        self.metrics.directory_records.set(len(self.directory))
        self.metrics.members.set(len(self.directory.members(now_ms())))
        self.metrics.uptime.set(time.monotonic() - self.started_at)
        certificate = self.directory.certificate(self.id)
        if certificate is not None:
            self.metrics.cert_expiry.set(certificate.not_after / 1000)


def _file_signature(path: Path) -> tuple[int, int] | None:
    try:
        status = path.stat()
    except OSError:
        return None
    return (status.st_mtime_ns, status.st_size)


# Python's cycle collector runs every 700 net container allocations by default. A
# node allocates a few dozen short-lived objects per frame, nearly all freed by their
# reference count, so at a thousand frames a second the collector ran every few
# milliseconds and found almost nothing. Every 20,000 it finds the same cycles: in
# ``govnode bench delivery`` the sending process spent 0.17 s collecting for 7,000
# documents before, 0.03 s after. Process-wide, and never lowered once raised.
GC_YOUNG_THRESHOLD = 20_000


def _collect_garbage_less_often() -> None:
    young, middle, old = gc.get_threshold()
    if young < GC_YOUNG_THRESHOLD:
        gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)

