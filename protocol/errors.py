"""Every way the protocol can refuse something, each with a stable code.

Theory of operation: the rest of ``protocol/`` never raises anything but a
``ProtocolError`` subclass for bad input. The node's HTTP layer turns the error's
``code`` into a 4xx answer with a msgpack/JSON body ``{"error": code, "detail": ...}``,
so the codes below are part of the wire contract (see SPEC.md) and never change
meaning. New refusals get a new class here, never an ad-hoc string elsewhere.
"""

from __future__ import annotations


class ProtocolError(Exception):
    """Base of every typed refusal. ``code`` is stable; the message is for people."""

    code = "protocol_error"
    http_status = 400

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail or self.code)
        self.detail = detail or self.code

    def as_dict(self) -> dict[str, str]:
        return {"error": self.code, "detail": self.detail}


# --- decoding ---------------------------------------------------------------

class Malformed(ProtocolError):
    code = "malformed"


class TooLarge(ProtocolError):
    code = "too_large"
    http_status = 413


class UnsupportedVersion(ProtocolError):
    code = "unsupported_version"


class UnknownType(ProtocolError):
    code = "unknown_type"


# --- identity and trust -----------------------------------------------------

class BadNodeId(ProtocolError):
    code = "bad_node_id"


class NoRoute(ProtocolError):
    code = "no_route"


class BadSignature(ProtocolError):
    code = "bad_signature"
    http_status = 401


class UnknownOrigin(ProtocolError):
    code = "unknown_origin"
    http_status = 401


class UnknownRoot(ProtocolError):
    code = "unknown_root"
    http_status = 401


class WrongIssuer(ProtocolError):
    code = "wrong_issuer"
    http_status = 401


class NameConstraint(ProtocolError):
    code = "name_constraint"
    http_status = 401


class ExpiredCert(ProtocolError):
    code = "expired_cert"
    http_status = 401


class NotYetValid(ProtocolError):
    code = "not_yet_valid"
    http_status = 401


class Revoked(ProtocolError):
    code = "revoked"
    http_status = 403


class BadKeyFile(ProtocolError):
    code = "bad_key_file"


class BadPassphrase(ProtocolError):
    code = "bad_passphrase"
    http_status = 401


class CannotDecrypt(ProtocolError):
    code = "cannot_decrypt"


# --- delivery ---------------------------------------------------------------

class Replay(ProtocolError):
    code = "replay"
    http_status = 409


class NotAddressedHere(ProtocolError):
    code = "not_addressed_here"
    http_status = 421


class NotReady(ProtocolError):
    """The node cannot serve this yet (e.g. it is not enrolled): try again later."""

    code = "not_ready"
    http_status = 503


# --- documents --------------------------------------------------------------

class InvalidDocument(ProtocolError):
    """A document that breaks a rule of ``documents.validate_document``; the detail
    names the field in Chinese and English ("标题 title is required")."""

    code = "invalid_document"


# --- workflow ---------------------------------------------------------------

class IllegalTransition(ProtocolError):
    code = "illegal_transition"
    http_status = 409


class NotPermitted(ProtocolError):
    code = "not_permitted"
    http_status = 403


# --- the node's JSON API ----------------------------------------------------

class Unauthorized(ProtocolError):
    """No API token, or one that is unknown or revoked (``Authorization: Bearer``)."""

    code = "unauthorized"
    http_status = 401


class NotFound(ProtocolError):
    """The thing named in the request (e.g. a document id) is not on this node."""

    code = "not_found"
    http_status = 404


def all_error_classes() -> list[type[ProtocolError]]:
    """Every concrete error class, for the SPEC table test and the HTTP layer."""
    found: list[type[ProtocolError]] = []
    pending = list(ProtocolError.__subclasses__())
    while pending:
        cls = pending.pop(0)
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found
