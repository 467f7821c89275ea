"""The slice of MLS (RFC 9420) wire encoding a DAVE delivery service needs.

davey is member-side only, so the simulator's voice server does the external sender's part
itself (voice-protocol.md §5.3): it publishes its P-256 key (op 25), validates the members'
KeyPackages (op 26), signs external Add and Remove proposals (op 27), names them by
ProposalRef (op 27 revoke, and to check that a commit covers them), and splits a member's
op 28 into its commit and Welcome by parsing the commit.

Only what DAVE protocol version 1 uses is covered: MLS 1.0, ciphersuite 2
(MLS_128_DHKEMP256_AES128GCM_SHA256_P256), basic credentials, PublicMessage handshakes.
Everything is bytes in, bytes out; nothing here touches a socket.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

MLS_VERSION = 1
#: MLS_128_DHKEMP256_AES128GCM_SHA256_P256, the only suite of DAVE version 1.
CIPHER_SUITE = 2
CREDENTIAL_BASIC = 1

WIRE_PUBLIC_MESSAGE = 1
WIRE_PRIVATE_MESSAGE = 2
WIRE_WELCOME = 3
WIRE_GROUP_INFO = 4
WIRE_KEY_PACKAGE = 5

SENDER_MEMBER = 1
SENDER_EXTERNAL = 2
SENDER_NEW_MEMBER_PROPOSAL = 3
SENDER_NEW_MEMBER_COMMIT = 4

CONTENT_APPLICATION = 1
CONTENT_PROPOSAL = 2
CONTENT_COMMIT = 3

PROPOSAL_ADD = 1
PROPOSAL_UPDATE = 2
PROPOSAL_REMOVE = 3

PROPOSAL_OR_REF_PROPOSAL = 1
PROPOSAL_OR_REF_REFERENCE = 2

LEAF_SOURCE_KEY_PACKAGE = 1
LEAF_SOURCE_UPDATE = 2
LEAF_SOURCE_COMMIT = 3

#: The only KeyPackage lifetime DAVE accepts: not_before 0, not_after 2^64 - 1.
MAX_LIFETIME = (0, 2**64 - 1)

_U64_MAX = 2**64 - 1


class MLSError(ValueError):
    """Bytes that do not decode as the MLS structure expected, or that fail validation."""


# --- primitives -------------------------------------------------------------------------


def varint(value: int) -> bytes:
    """The RFC 9420 §2.1.2 variable-length integer (1, 2 or 4 bytes)."""
    if value < 0:
        raise MLSError(f"negative length {value}")
    if value < 1 << 6:
        return value.to_bytes(1, "big")
    if value < 1 << 14:
        return (value | 0x4000).to_bytes(2, "big")
    if value < 1 << 30:
        return (value | 0x8000_0000).to_bytes(4, "big")
    raise MLSError(f"length {value} does not fit a varint")


def vec(data: bytes) -> bytes:
    """``opaque data<V>``: the varint length, then the bytes."""
    return varint(len(data)) + data


def u8(value: int) -> bytes:
    return value.to_bytes(1, "big")


def u16(value: int) -> bytes:
    return value.to_bytes(2, "big")


def u32(value: int) -> bytes:
    return value.to_bytes(4, "big")


def u64(value: int) -> bytes:
    return value.to_bytes(8, "big")


class Reader:
    """A cursor over TLS-presentation-language bytes; every read checks bounds."""

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = bytes(data)
        self.pos = pos

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos

    def done(self) -> bool:
        return self.pos >= len(self.data)

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise MLSError(f"truncated: wanted {n} bytes at offset {self.pos} of {len(self.data)}")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def uint(self, size: int) -> int:
        return int.from_bytes(self.take(size), "big")

    def u8(self) -> int:
        return self.uint(1)

    def u16(self) -> int:
        return self.uint(2)

    def u32(self) -> int:
        return self.uint(4)

    def u64(self) -> int:
        return self.uint(8)

    def varint(self) -> int:
        first = self.u8()
        prefix = first >> 6
        if prefix == 0:
            return first & 0x3F
        if prefix == 1:
            value = ((first & 0x3F) << 8) | self.u8()
            if value < 1 << 6:
                raise MLSError("varint is not minimally encoded")
            return value
        if prefix == 2:
            value = ((first & 0x3F) << 24) | self.uint(3)
            if value < 1 << 14:
                raise MLSError("varint is not minimally encoded")
            return value
        raise MLSError("invalid varint prefix 0b11")

    def vec(self) -> bytes:
        """``opaque<V>``."""
        return self.take(self.varint())

    def sub(self) -> Reader:
        """A reader over the next ``<V>`` vector (for vectors of structures)."""
        return Reader(self.vec())

    def expect_done(self, what: str) -> None:
        if not self.done():
            raise MLSError(f"{self.remaining} trailing bytes after {what}")


# --- signatures and hashes --------------------------------------------------------------


def sign_content(label: str, content: bytes) -> bytes:
    """``SignContent`` of SignWithLabel: ``<V>"MLS 1.0 " + label ‖ <V>content``."""
    return vec(b"MLS 1.0 " + label.encode()) + vec(content)


def ref_hash(label: str, value: bytes) -> bytes:
    """RFC 9420 §5.2 RefHash with SHA-256 (ciphersuite 2)."""
    return hashlib.sha256(vec(label.encode()) + vec(value)).digest()


def public_key_from_point(point: bytes) -> ec.EllipticCurvePublicKey:
    """A P-256 public key from its 65-byte uncompressed SEC1 encoding."""
    if len(point) != 65 or point[0] != 4:
        raise MLSError(f"not an uncompressed P-256 point ({len(point)} bytes)")
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    except ValueError as exc:
        raise MLSError("not a point on P-256") from exc


def verify_with_label(point: bytes, label: str, content: bytes, signature: bytes) -> bool:
    """VerifyWithLabel for ECDSA-P256-SHA256 (DER signatures, as OpenMLS and libdave sign)."""
    key = public_key_from_point(point)
    try:
        key.verify(signature, sign_content(label, content), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


class SigningKey:
    """The delivery service's P-256 external-sender key."""

    def __init__(self, private_key: ec.EllipticCurvePrivateKey | None = None) -> None:
        self.private_key = private_key or ec.generate_private_key(ec.SECP256R1())
        numbers = self.private_key.public_key().public_numbers()
        self.public_point = b"\x04" + numbers.x.to_bytes(32, "big") + numbers.y.to_bytes(32, "big")

    def sign_with_label(self, label: str, content: bytes) -> bytes:
        """SignWithLabel: a DER ECDSA-P256-SHA256 signature over SignContent."""
        return self.private_key.sign(sign_content(label, content), ec.ECDSA(hashes.SHA256()))


# --- external sender (op 25) ------------------------------------------------------------


def encode_external_sender(signature_key: bytes, identity: bytes = b"") -> bytes:
    """The op 25 payload: ``signature_key<V> ‖ u16 credential_type=1 ‖ identity<V>``."""
    return vec(signature_key) + u16(CREDENTIAL_BASIC) + vec(identity)


@dataclass(frozen=True)
class ExternalSender:
    """A decoded op 25 payload."""

    signature_key: bytes
    credential_type: int
    identity: bytes


def parse_external_sender(data: bytes) -> ExternalSender:
    r = Reader(data)
    key = r.vec()
    cred_type = r.u16()
    if cred_type != CREDENTIAL_BASIC:
        raise MLSError(f"external sender credential type {cred_type} is not basic")
    identity = r.vec()
    r.expect_done("ExternalSender")
    return ExternalSender(key, cred_type, identity)


# --- LeafNode and KeyPackage ------------------------------------------------------------


@dataclass(frozen=True)
class Capabilities:
    versions: tuple[int, ...]
    cipher_suites: tuple[int, ...]
    extensions: tuple[int, ...]
    proposals: tuple[int, ...]
    credentials: tuple[int, ...]


@dataclass(frozen=True)
class LeafNode:
    """A decoded LeafNode; ``tbs_prefix`` is its encoding minus the signature."""

    encryption_key: bytes
    signature_key: bytes
    credential_type: int
    identity: bytes
    capabilities: Capabilities
    source: int
    lifetime: tuple[int, int] | None
    parent_hash: bytes | None
    extensions: tuple[tuple[int, bytes], ...]
    signature: bytes
    tbs_prefix: bytes

    @property
    def user_id(self) -> int:
        """The DAVE user id: the basic credential's identity as 8 big-endian bytes."""
        if self.credential_type != CREDENTIAL_BASIC or len(self.identity) != 8:
            raise MLSError("credential is not an 8-byte basic identity")
        return int.from_bytes(self.identity, "big")


def _u16_list(r: Reader) -> tuple[int, ...]:
    sub = r.sub()
    if sub.remaining % 2:
        raise MLSError("odd-length u16 vector")
    return tuple(sub.u16() for _ in range(sub.remaining // 2))


def _extensions(r: Reader) -> tuple[tuple[int, bytes], ...]:
    sub = r.sub()
    out = []
    while not sub.done():
        out.append((sub.u16(), sub.vec()))
    return tuple(out)


def parse_leaf_node(r: Reader) -> LeafNode:
    start = r.pos
    encryption_key = r.vec()
    signature_key = r.vec()
    credential_type = r.u16()
    # Basic: the identity. X.509 (2; DAVE never uses it): the certificates, kept opaque.
    if credential_type in (CREDENTIAL_BASIC, 2):
        identity = r.vec()
    else:
        raise MLSError(f"unknown credential type {credential_type}")
    capabilities = Capabilities(
        _u16_list(r), _u16_list(r), _u16_list(r), _u16_list(r), _u16_list(r)
    )
    source = r.u8()
    lifetime: tuple[int, int] | None = None
    parent_hash: bytes | None = None
    if source == LEAF_SOURCE_KEY_PACKAGE:
        lifetime = (r.u64(), r.u64())
    elif source == LEAF_SOURCE_COMMIT:
        parent_hash = r.vec()
    elif source != LEAF_SOURCE_UPDATE:
        raise MLSError(f"unknown leaf node source {source}")
    extensions = _extensions(r)
    tbs_prefix = r.data[start : r.pos]
    signature = r.vec()
    return LeafNode(
        encryption_key,
        signature_key,
        credential_type,
        identity,
        capabilities,
        source,
        lifetime,
        parent_hash,
        extensions,
        signature,
        tbs_prefix,
    )


@dataclass(frozen=True)
class KeyPackage:
    """A decoded KeyPackage; ``raw`` is its exact encoding, ``tbs`` the signed part."""

    version: int
    cipher_suite: int
    init_key: bytes
    leaf_node: LeafNode
    extensions: tuple[tuple[int, bytes], ...]
    signature: bytes
    tbs: bytes
    raw: bytes

    @property
    def user_id(self) -> int:
        return self.leaf_node.user_id

    @property
    def ref(self) -> bytes:
        """KeyPackageRef, which names the recipient of each of a Welcome's secrets."""
        return ref_hash("MLS 1.0 KeyPackage Reference", self.raw)

    def signatures_valid(self) -> bool:
        """Both the LeafNode's and the KeyPackage's own signature verify."""
        key = self.leaf_node.signature_key
        return verify_with_label(
            key, "LeafNodeTBS", self.leaf_node.tbs_prefix, self.leaf_node.signature
        ) and verify_with_label(key, "KeyPackageTBS", self.tbs, self.signature)


def parse_key_package_from(r: Reader) -> KeyPackage:
    start = r.pos
    version = r.u16()
    cipher_suite = r.u16()
    init_key = r.vec()
    leaf = parse_leaf_node(r)
    extensions = _extensions(r)
    tbs = r.data[start : r.pos]
    signature = r.vec()
    return KeyPackage(
        version, cipher_suite, init_key, leaf, extensions, signature, tbs, r.data[start : r.pos]
    )


def parse_key_package(data: bytes) -> KeyPackage:
    """A bare KeyPackage, as op 26 carries it (not MLSMessage-wrapped)."""
    r = Reader(data)
    kp = parse_key_package_from(r)
    r.expect_done("KeyPackage")
    return kp


def validate_key_package(data: bytes, user_id: int) -> KeyPackage:
    """The op 26 checks of the DAVE delivery service; raises :class:`MLSError` on failure."""
    kp = parse_key_package(data)
    if kp.version != MLS_VERSION:
        raise MLSError(f"KeyPackage version {kp.version}")
    if kp.cipher_suite != CIPHER_SUITE:
        raise MLSError(f"KeyPackage cipher suite {kp.cipher_suite}")
    leaf = kp.leaf_node
    if leaf.source != LEAF_SOURCE_KEY_PACKAGE:
        raise MLSError("leaf node is not from a key package")
    if leaf.credential_type != CREDENTIAL_BASIC or len(leaf.identity) != 8:
        raise MLSError("credential is not an 8-byte basic identity")
    if leaf.user_id != user_id:
        raise MLSError(f"KeyPackage identity {leaf.user_id} is not the session user {user_id}")
    if leaf.lifetime != MAX_LIFETIME:
        raise MLSError(f"KeyPackage lifetime {leaf.lifetime} is not the maximum")
    if not kp.signatures_valid():
        raise MLSError("KeyPackage signature does not verify")
    return kp


# --- proposals, commits, messages -------------------------------------------------------


@dataclass(frozen=True)
class Proposal:
    """An Add (``key_package``), Remove (``removed`` leaf) or Update (``leaf_node``)."""

    proposal_type: int
    key_package: KeyPackage | None = None
    removed: int | None = None
    leaf_node: LeafNode | None = None


def add_proposal(key_package: bytes) -> bytes:
    """An encoded Add proposal (``u16 1 ‖ KeyPackage``)."""
    return u16(PROPOSAL_ADD) + key_package


def remove_proposal(leaf_index: int) -> bytes:
    """An encoded Remove proposal (``u16 3 ‖ u32 leaf``)."""
    return u16(PROPOSAL_REMOVE) + u32(leaf_index)


def parse_proposal(r: Reader) -> Proposal:
    kind = r.u16()
    if kind == PROPOSAL_ADD:
        return Proposal(kind, key_package=parse_key_package_from(r))
    if kind == PROPOSAL_REMOVE:
        return Proposal(kind, removed=r.u32())
    if kind == PROPOSAL_UPDATE:
        return Proposal(kind, leaf_node=parse_leaf_node(r))
    raise MLSError(f"proposal type {kind} is not used by DAVE")


@dataclass(frozen=True)
class Commit:
    """A decoded Commit: its proposals (refs or inline) and whether it has an UpdatePath."""

    refs: tuple[bytes, ...]
    inline: tuple[Proposal, ...]
    has_path: bool
    path_leaf: LeafNode | None


def _parse_commit(r: Reader) -> Commit:
    refs: list[bytes] = []
    inline: list[Proposal] = []
    sub = r.sub()
    while not sub.done():
        kind = sub.u8()
        if kind == PROPOSAL_OR_REF_PROPOSAL:
            inline.append(parse_proposal(sub))
        elif kind == PROPOSAL_OR_REF_REFERENCE:
            refs.append(sub.vec())
        else:
            raise MLSError(f"unknown ProposalOrRef type {kind}")
    present = r.u8()
    path_leaf: LeafNode | None = None
    if present == 1:
        path_leaf = parse_leaf_node(r)
        nodes = r.sub()
        while not nodes.done():
            nodes.vec()  # encryption_key
            secrets = nodes.sub()
            while not secrets.done():
                secrets.vec()  # kem_output
                secrets.vec()  # ciphertext
    elif present != 0:
        raise MLSError(f"bad optional<UpdatePath> flag {present}")
    return Commit(tuple(refs), tuple(inline), present == 1, path_leaf)


@dataclass(frozen=True)
class PublicMessage:
    """A decoded ``MLSMessage`` holding a PublicMessage.

    ``content`` is ``wire_format ‖ FramedContent``; ``raw`` is the whole message.
    """

    group_id: bytes
    epoch: int
    sender_type: int
    sender_index: int
    authenticated_data: bytes
    content_type: int
    proposal: Proposal | None
    commit: Commit | None
    signature: bytes
    confirmation_tag: bytes | None
    membership_tag: bytes | None
    content: bytes
    raw: bytes

    @property
    def auth_start(self) -> int:
        """Where FramedContentAuthData starts in ``raw``."""
        return 2 + len(self.content)

    @property
    def authenticated_content(self) -> bytes:
        """``wire_format ‖ FramedContent ‖ FramedContentAuthData``: what a ProposalRef hashes."""
        auth = vec(self.signature)
        if self.confirmation_tag is not None:
            auth += vec(self.confirmation_tag)
        return self.content + auth

    @property
    def proposal_ref(self) -> bytes:
        if self.content_type != CONTENT_PROPOSAL:
            raise MLSError("not a proposal")
        return proposal_ref(self.authenticated_content)


def parse_mls_message_from(r: Reader) -> PublicMessage:
    start = r.pos
    version = r.u16()
    if version != MLS_VERSION:
        raise MLSError(f"MLS version {version}")
    content_start = r.pos
    wire_format = r.u16()
    if wire_format != WIRE_PUBLIC_MESSAGE:
        raise MLSError(f"wire format {wire_format} is not a PublicMessage")
    group_id = r.vec()
    epoch = r.u64()
    sender_type = r.u8()
    if sender_type in (SENDER_MEMBER, SENDER_EXTERNAL):
        sender_index = r.u32()
    elif sender_type in (SENDER_NEW_MEMBER_PROPOSAL, SENDER_NEW_MEMBER_COMMIT):
        sender_index = 0
    else:
        raise MLSError(f"unknown sender type {sender_type}")
    authenticated_data = r.vec()
    content_type = r.u8()
    proposal: Proposal | None = None
    commit: Commit | None = None
    if content_type == CONTENT_PROPOSAL:
        proposal = parse_proposal(r)
    elif content_type == CONTENT_COMMIT:
        commit = _parse_commit(r)
    elif content_type == CONTENT_APPLICATION:
        r.vec()
    else:
        raise MLSError(f"unknown content type {content_type}")
    content = r.data[content_start : r.pos]
    signature = r.vec()
    confirmation_tag = r.vec() if content_type == CONTENT_COMMIT else None
    membership_tag = r.vec() if sender_type == SENDER_MEMBER else None
    return PublicMessage(
        group_id,
        epoch,
        sender_type,
        sender_index,
        authenticated_data,
        content_type,
        proposal,
        commit,
        signature,
        confirmation_tag,
        membership_tag,
        content,
        r.data[start : r.pos],
    )


def parse_mls_message(data: bytes) -> PublicMessage:
    r = Reader(data)
    msg = parse_mls_message_from(r)
    r.expect_done("MLSMessage")
    return msg


def proposal_ref(authenticated_content: bytes) -> bytes:
    """ProposalRef = RefHash("MLS 1.0 Proposal Reference", AuthenticatedContent)."""
    return ref_hash("MLS 1.0 Proposal Reference", authenticated_content)


def framed_content_external(group_id: bytes, epoch: int, proposal: bytes) -> bytes:
    """FramedContent of an external sender's proposal (sender index 0, no authenticated data)."""
    return (
        vec(group_id)
        + u64(epoch)
        + u8(SENDER_EXTERNAL)
        + u32(0)
        + vec(b"")
        + u8(CONTENT_PROPOSAL)
        + proposal
    )


@dataclass(frozen=True)
class ExternalProposal:
    """A signed external proposal: the MLSMessage bytes and its ProposalRef."""

    message: bytes
    ref: bytes


def external_proposal(
    key: SigningKey, group_id: bytes, epoch: int, proposal: bytes
) -> ExternalProposal:
    """Sign ``proposal`` as the external sender (voice-protocol.md §5.3).

    An external sender's FramedContentTBS has no GroupContext and its PublicMessage no
    membership tag, so nothing here depends on the group's state beyond id and epoch.
    """
    tbs = (
        u16(MLS_VERSION)
        + u16(WIRE_PUBLIC_MESSAGE)
        + framed_content_external(group_id, epoch, proposal)
    )
    signature = key.sign_with_label("FramedContentTBS", tbs)
    message = tbs + vec(signature)
    return ExternalProposal(message, proposal_ref(message[2:]))


def verify_external_proposal(message: PublicMessage, signature_key: bytes) -> bool:
    """Whether ``message`` is an external proposal signed by ``signature_key``."""
    if message.sender_type != SENDER_EXTERNAL or message.content_type != CONTENT_PROPOSAL:
        return False
    tbs = u16(MLS_VERSION) + message.content
    return verify_with_label(signature_key, "FramedContentTBS", tbs, message.signature)


def encode_proposals(messages: list[bytes]) -> bytes:
    """The op 27 append payload: ``u8 0 ‖ <V>(MLSMessage...)``."""
    return u8(0) + vec(b"".join(messages))


def encode_revoke(refs: list[bytes]) -> bytes:
    """The op 27 revoke payload: ``u8 1 ‖ <V>(<V>ref...)``."""
    return u8(1) + vec(b"".join(vec(ref) for ref in refs))


def parse_proposals_payload(payload: bytes) -> tuple[int, list[bytes]]:
    """An op 27 payload: its operation type, then the messages (append) or refs (revoke)."""
    r = Reader(payload)
    op_type = r.u8()
    body = r.sub()
    r.expect_done("op 27")
    items: list[bytes] = []
    while not body.done():
        if op_type == 0:
            start = body.pos
            parse_mls_message_from(body)
            items.append(body.data[start : body.pos])
        elif op_type == 1:
            items.append(body.vec())
        else:
            raise MLSError(f"op 27 operation type {op_type}")
    return op_type, items


# --- Welcome and op 28 ------------------------------------------------------------------


@dataclass(frozen=True)
class Welcome:
    """A decoded bare Welcome: whom it has secrets for, by KeyPackageRef."""

    cipher_suite: int
    new_members: tuple[bytes, ...]
    raw: bytes


def parse_welcome(data: bytes) -> Welcome:
    r = Reader(data)
    suite = r.u16()
    secrets = r.sub()
    members: list[bytes] = []
    while not secrets.done():
        members.append(secrets.vec())  # KeyPackageRef new_member<V>
        secrets.vec()  # HPKECiphertext.kem_output
        secrets.vec()  # HPKECiphertext.ciphertext
    r.vec()  # encrypted_group_info
    r.expect_done("Welcome")
    return Welcome(suite, tuple(members), bytes(data))


@dataclass(frozen=True)
class CommitWelcome:
    """An op 28 payload split in two."""

    commit: PublicMessage
    welcome: Welcome | None

    @property
    def commit_bytes(self) -> bytes:
        return self.commit.raw


def split_commit_welcome(payload: bytes) -> CommitWelcome:
    """Split ``MLSMessage commit [‖ Welcome]``: parse the commit; any remainder is the Welcome."""
    r = Reader(payload)
    commit = parse_mls_message_from(r)
    if commit.content_type != CONTENT_COMMIT:
        raise MLSError("op 28 does not start with a commit")
    welcome = parse_welcome(r.data[r.pos :]) if not r.done() else None
    return CommitWelcome(commit, welcome)
