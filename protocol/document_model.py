"""The 公文 as data: the ``Document`` and ``Attachment`` dataclasses and their limits.

The GB/T 9704-2012 elements a ``Document`` carries are described in ``documents.py``;
what each field may hold is checked in ``document_rules.py``. This module only names
things: the 15 kinds, the urgencies and classifications, every size limit, the
msgpack ``Limits`` a sealed content is read with, and the bilingual label of each
field used in refusals. It imports nothing but ``wire.Limits`` and
``workflow.REPLY_KIND``, so both the rules and the codec can depend on it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Final

from protocol.wire import Limits
from protocol.workflow import REPLY_KIND

__all__ = [
    "KINDS", "URGENCIES", "CLASSIFICATIONS", "TOP_SECRET", "SIGNER_REQUIRED_KINDS",
    "REPLY_KINDS", "CONTENT_VERSION", "DOC_ID_BYTES", "SHA256_BYTES", "MAX_TITLE_CHARS",
    "MAX_NAME_CHARS", "MAX_DOC_NUMBER_CHARS", "MAX_SECRECY_PERIOD_CHARS",
    "MAX_COPY_NUMBER_CHARS", "MAX_SIGNER_CHARS", "MAX_BODY_CHARS", "MAX_NOTES_CHARS",
    "MAX_ATTACHMENTS", "MAX_ATTACHMENT_NAME_CHARS", "MAX_MEDIA_TYPE_CHARS",
    "MAX_ATTACHMENTS_BYTES", "MAX_RECIPIENTS", "MAX_CONTENT_BYTES", "CONTENT_LIMITS",
    "FIELD_LABELS", "MAX_INT", "Attachment", "Document", "document_from_fields",
]

KINDS: Final = ("决议", "决定", "命令", "公报", "公告", "通告", "意见", "通知", "通报",
                "报告", "请示", "批复", "议案", "函", "纪要")
URGENCIES: Final = ("特急", "加急", "平急")  # or "" for none
CLASSIFICATIONS: Final = ("", "秘密", "机密")
TOP_SECRET: Final = "绝密"  # never carried by govnode: refused by name
SIGNER_REQUIRED_KINDS: Final = frozenset({"请示"})  # 上行文 carry 签发人 (GB/T 9704 7.2.6)
REPLY_KINDS: Final = frozenset(REPLY_KIND.values())  # a 批复 must say what it answers

CONTENT_VERSION: Final = 1
DOC_ID_BYTES: Final = 16
SHA256_BYTES: Final = 32
MAX_TITLE_CHARS: Final = 500
MAX_NAME_CHARS: Final = 200  # 发文机关, 印发机关 (as a certificate's display name)
MAX_DOC_NUMBER_CHARS: Final = 100
MAX_SECRECY_PERIOD_CHARS: Final = 20
MAX_COPY_NUMBER_CHARS: Final = 20
MAX_SIGNER_CHARS: Final = 100
MAX_BODY_CHARS: Final = 1_000_000
MAX_NOTES_CHARS: Final = 2000
MAX_ATTACHMENTS: Final = 64
MAX_ATTACHMENT_NAME_CHARS: Final = 255
MAX_MEDIA_TYPE_CHARS: Final = 127
MAX_ATTACHMENTS_BYTES: Final = 12 * 1024 * 1024  # total; a node may configure lower
MAX_RECIPIENTS: Final = 4096  # 主送 + 抄送
# A sealed content must fit in one frame (16 MiB in all, SPEC §3): keep 64 KiB for
# the seal's 48 bytes and the frame around it.
MAX_CONTENT_BYTES: Final = 16 * 1024 * 1024 - 64 * 1024

# msgpack's max_str_len counts UTF-8 bytes, not characters: a 1,000,000-character body
# is up to 4,000,000 bytes (4 for a CJK Extension B character, 3 for common CJK). The
# character limits are checked after decoding, by validate_document.
CONTENT_LIMITS: Final = Limits(
    max_bytes=MAX_CONTENT_BYTES,
    max_str_len=4 * MAX_BODY_CHARS,
    max_bin_len=MAX_ATTACHMENTS_BYTES,
    max_array_len=MAX_RECIPIENTS,
    max_map_len=32,
    max_depth=3,  # content map > attachments array > attachment map
)

FIELD_LABELS: Final[Mapping[str, str]] = {
    "doc_id": "公文标识 doc_id",
    "title": "标题 title",
    "kind": "文种 kind",
    "issuer": "发文机关 issuer",
    "issuer_id": "发文节点 issuer_id",
    "main_recipients": "主送机关 main_recipients",
    "cc_recipients": "抄送机关 cc_recipients",
    "doc_number": "发文字号 doc_number",
    "urgency": "紧急程度 urgency",
    "classification": "密级 classification",
    "secrecy_period": "保密期限 secrecy_period",
    "copy_number": "份号 copy_number",
    "signer": "签发人 signer",
    "body": "正文 body",
    "attachments": "附件 attachments",
    "notes": "附注 notes",
    "written_date": "成文日期 written_date",
    "printed_by": "印发机关 printed_by",
    "printed_date": "印发日期 printed_date",
    "deadline": "办理时限 deadline",
    "in_reply_to": "所复公文 in_reply_to",
    "created_at": "创建时间 created_at",
}
MAX_INT: Final = 2**63 - 1


@dataclass(frozen=True)
class Attachment:
    """One 附件, named by the SHA-256 of its bytes (which travel beside it)."""

    name: str  # file name as shown, 1..255 chars, no '/', '\\', control characters or bidi overrides
    media_type: str  # "type/subtype", e.g. "application/pdf", 1..127 chars
    sha256: bytes  # 32 bytes: content address
    size: int  # bytes


@dataclass(frozen=True)
class Document:
    """One 公文 as its issuer wrote it; every recipient's copy is identical."""

    doc_id: bytes  # 16 bytes, shared by every recipient's copy
    title: str  # 标题, 1..500 chars after strip
    kind: str  # 文种, one of KINDS
    issuer: str  # 发文机关 display name
    issuer_id: str  # the sending node id
    main_recipients: tuple[str, ...]  # 主送机关, node ids, at least one
    cc_recipients: tuple[str, ...] = ()  # 抄送机关, node ids
    doc_number: str = ""  # 发文字号, e.g. 粤府办〔2013〕12号
    urgency: str = ""  # 紧急程度, one of URGENCIES or ""
    classification: str = ""  # 密级, one of CLASSIFICATIONS
    secrecy_period: str = ""  # 保密期限, e.g. "1年", only with a classification
    copy_number: str = ""  # 份号, digits
    signer: str = ""  # 签发人, required for a 请示
    body: str = ""  # 正文
    attachments: tuple[Attachment, ...] = ()  # 附件
    notes: str = ""  # 附注
    written_date: str = ""  # 成文日期, YYYY-MM-DD
    printed_by: str = ""  # 印发机关
    printed_date: str = ""  # 印发日期, YYYY-MM-DD
    deadline: int | None = None  # 办理时限, ms since the epoch
    in_reply_to: bytes | None = None  # doc_id of the document this answers
    created_at: int = 0  # ms


_DOCUMENT_FIELDS: Final = frozenset(field.name for field in fields(Document))


def document_from_fields(values: dict[str, object]) -> Document:
    """``Document(**values)``, made without running the frozen ``__init__`` (22
    ``object.__setattr__`` calls, some microseconds): for the paths every sent and
    received document takes, which validate it next. Unlike ``__init__`` it takes no
    defaults: ``TypeError`` unless ``values`` names exactly the fields. ``Document``
    has no ``__post_init__`` for this to skip (tests/test_documents_kept.py)."""
    if values.keys() != _DOCUMENT_FIELDS:
        missing = sorted(_DOCUMENT_FIELDS - values.keys())
        raise TypeError(f"Document fields missing: {missing}" if missing else
                        f"not Document fields: {sorted(values.keys() - _DOCUMENT_FIELDS)}")
    document = object.__new__(Document)
    document.__dict__.update(values)
    return document
