"""Prometheus metrics, one registry per node (several nodes may share a process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client import CONTENT_TYPE_LATEST  # noqa: F401  (re-exported for the route)


class NodeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.gossip_rounds = Counter("govnode_gossip_rounds", "Gossip exchanges by outcome",
                                     ["result"], registry=r)
        self.gossip_bytes = Counter("govnode_gossip_bytes", "Gossip bytes on the wire",
                                    ["direction"], registry=r)
        self.rejections = Counter("govnode_rejections", "Refused inputs by error code",
                                  ["code"], registry=r)
        self.records_refused = Counter("govnode_directory_records_refused",
                                       "Directory records that failed verification",
                                       ["code"], registry=r)
        self.directory_records = Gauge("govnode_directory_records", "Records in the directory",
                                       registry=r)
        self.members = Gauge("govnode_directory_members", "Members with a valid certificate",
                             registry=r)
        self.equivocations = Counter("govnode_directory_equivocations",
                                     "Same-sequence conflicting records seen", registry=r)
        self.peer_last_contact = Gauge("govnode_peer_last_contact_timestamp_seconds",
                                       "Last successful exchange with a peer", ["peer"], registry=r)
        self.cert_expiry = Gauge("govnode_certificate_expiry_timestamp_seconds",
                                 "When this node's certificate expires", registry=r)
        self.uptime = Gauge("govnode_uptime_seconds", "Seconds since this node started",
                            registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
