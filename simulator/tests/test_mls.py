"""MLS wire encoding for the DAVE external sender, against davey's captured vectors and davey."""

from __future__ import annotations

import davey
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from discordsim import mls

# Captured DAVE messages from davey's own test suite (Snazzah/davey, MIT licence,
# davey-python/test/test_session.py): a real Discord session in channel
# 927310423890473011 as user 158049329150427136, where the voice server proposes adding
# user 158533742254751744.
CHANNEL_ID = 927310423890473011
MY_USER_ID = 158049329150427136
OTHER_USER_ID = 158533742254751744

#: The op 25 payload (after seq and opcode).
EXTERNAL_SENDER = bytes.fromhex(
    "404104ca1a2b102501d0672bd45ed74ffb83e078b2ba5b12c3f69fad56f083b6a35fc989c6736b5852b5aecd"
    "fcdf206e156d3d1dba8e3e5b2f89fc0c16f11614e84e4a00010100"
)

#: An op 27 append payload after the operation type byte: ``<V>`` of one external Add.
APPENDING_PROPOSALS = bytes.fromhex(
    "41f000010001080cde77eadc823033000000000000000002000000000002000100010002404104a61acd34ff"
    "0548e6f767cc4df9619b51ba5814d52ee558284fc554405768e9e741ba32276414941b7c0190dcb5dfc3349a"
    "168f1247ecbdf6fc69f3eecab3765d404104f44da24e5aa9f73796fa38be115556e6b7d4f6ba55d2ecc3f1b9"
    "d198af6237e3fc8fc635996b6c76e77b4acace33f5cfd745ad0d540dd6f03f0da85c82e14714404104e77939"
    "85ed074af49568b53cf2e3974688279f02ee8d7c7df099ce3c7a1a28e747f59a7c7c23e9ef4f7815fb3469f3"
    "9ea124f8b76712c41b763a55b867e6b48b000108023339994002000002000102000200000200010100000000"
    "00000000ffffffffffffffff0040483046022100d874dc777d4ede7e6d3374f737bc1394ac0ffd0635abdc9d"
    "02b3e359e059466a022100e62e97aefd5c6b32ff0ac5c5159dbe94f6f5a01bd0dd14a9dcc4d1e6248972ac00"
    "4047304502205168abdf8d83a48daf8d5960afb305022de707c7496087feb43004c9fd2be5e80221008312a6"
    "f6df1ff593671a39f9966f6d1caef43e0c6d53c74300ba089ceeecfbf440473045022100cdbe804ba06a9be1"
    "7615fe3c7f9055f31a6d0ea9402dd9fda6d109e9a3cb632b022067409e59f6b7f0a3eddd330a092a6c13d99d"
    "12abaebe0d6d40a0dae435c2a7a2"
)

#: An op 27 revoke payload after the operation type byte: ``<V>`` of one ``<V>`` ref.
REVOKING_PROPOSALS = bytes.fromhex(
    "212062386ffb20b28f556b2465c0a2520ba2b074fca00e94b2fdebc0496d544cd6c0"
)

GROUP_ID = CHANNEL_ID.to_bytes(8, "big")


def captured_add() -> mls.PublicMessage:
    op_type, messages = mls.parse_proposals_payload(b"\x00" + APPENDING_PROPOSALS)
    assert op_type == 0
    assert len(messages) == 1
    return mls.parse_mls_message(messages[0])


# -- primitives --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (0, "00"),
        (63, "3f"),
        (64, "4040"),
        (496, "41f0"),
        (16383, "7fff"),
        (16384, "80004000"),
        (2**30 - 1, "bfffffff"),
    ],
)
def test_varint_boundaries_round_trip(value: int, encoded: str) -> None:
    assert mls.varint(value).hex() == encoded
    reader = mls.Reader(bytes.fromhex(encoded))
    assert reader.varint() == value
    assert reader.done()


@pytest.mark.parametrize("encoded", ["4001", "80000001", "c0"])
def test_varint_rejects_non_minimal_and_reserved_prefix(encoded: str) -> None:
    with pytest.raises(mls.MLSError):
        mls.Reader(bytes.fromhex(encoded)).varint()


def test_varint_too_large_and_truncated_vectors_raise() -> None:
    with pytest.raises(mls.MLSError):
        mls.varint(2**30)
    with pytest.raises(mls.MLSError, match="truncated"):
        mls.Reader(b"\x05abc").vec()


# -- op 25 -------------------------------------------------------------------------------


def test_captured_external_sender_parses_and_reencodes_byte_for_byte() -> None:
    sender = mls.parse_external_sender(EXTERNAL_SENDER)
    assert len(sender.signature_key) == 65
    assert sender.signature_key[0] == 4
    assert sender.credential_type == mls.CREDENTIAL_BASIC
    assert mls.encode_external_sender(sender.signature_key, sender.identity) == EXTERNAL_SENDER


def test_our_external_sender_is_accepted_by_davey() -> None:
    key = mls.SigningKey()
    payload = mls.encode_external_sender(key.public_point)
    assert mls.parse_external_sender(payload).signature_key == key.public_point
    session = davey.DaveSession(1, MY_USER_ID, CHANNEL_ID)
    session.set_external_sender(payload)
    assert session.status == davey.SessionStatus.pending


# -- external proposals ------------------------------------------------------------------


def test_captured_add_proposal_fields() -> None:
    message = captured_add()
    assert message.group_id == GROUP_ID
    assert message.epoch == 0
    assert message.sender_type == mls.SENDER_EXTERNAL
    assert message.sender_index == 0
    assert message.authenticated_data == b""
    assert message.content_type == mls.CONTENT_PROPOSAL
    assert message.membership_tag is None
    assert message.proposal is not None
    assert message.proposal.proposal_type == mls.PROPOSAL_ADD
    assert message.proposal.key_package is not None
    assert message.proposal.key_package.user_id == OTHER_USER_ID


def test_captured_add_signature_verifies_with_the_captured_external_sender() -> None:
    sender = mls.parse_external_sender(EXTERNAL_SENDER)
    message = captured_add()
    assert mls.verify_external_proposal(message, sender.signature_key)
    # Any other key, or a changed epoch, fails.
    assert not mls.verify_external_proposal(message, mls.SigningKey().public_point)
    raw = bytearray(message.raw)
    raw[2 + 2 + 1 + 8 + 7] ^= 1  # the low byte of the epoch
    assert not mls.verify_external_proposal(mls.parse_mls_message(bytes(raw)), sender.signature_key)


def test_our_encoding_of_the_captured_add_matches_byte_for_byte() -> None:
    message = captured_add()
    assert message.proposal is not None and message.proposal.key_package is not None
    kp = message.proposal.key_package.raw
    tbs = mls.u16(1) + mls.u16(1) + mls.framed_content_external(GROUP_ID, 0, mls.add_proposal(kp))
    assert tbs + mls.vec(message.signature) == message.raw
    assert mls.encode_proposals([message.raw]) == b"\x00" + APPENDING_PROPOSALS


def test_proposal_ref_matches_the_captured_revoke() -> None:
    message = captured_add()
    op_type, refs = mls.parse_proposals_payload(b"\x01" + REVOKING_PROPOSALS)
    assert op_type == 1
    assert refs == [message.proposal_ref]
    assert mls.encode_revoke([message.proposal_ref]) == b"\x01" + REVOKING_PROPOSALS


def test_signed_proposal_verifies_with_cryptography_and_its_ref_is_recomputable() -> None:
    key = mls.SigningKey()
    proposal = mls.external_proposal(key, GROUP_ID, 7, mls.remove_proposal(3))
    parsed = mls.parse_mls_message(proposal.message)
    assert parsed.epoch == 7
    assert parsed.proposal == mls.Proposal(mls.PROPOSAL_REMOVE, removed=3)
    # The signature is plain ECDSA-P256-SHA256 over SignContent("FramedContentTBS", ...).
    tbs = proposal.message[: -len(mls.vec(parsed.signature))]
    public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), key.public_point)
    public.verify(
        parsed.signature,
        mls.vec(b"MLS 1.0 FramedContentTBS") + mls.vec(tbs),
        ec.ECDSA(hashes.SHA256()),
    )
    assert proposal.ref == parsed.proposal_ref
    assert proposal.ref == mls.ref_hash("MLS 1.0 Proposal Reference", proposal.message[2:])


def test_davey_commits_to_our_signed_add_by_reference() -> None:
    key = mls.SigningKey()
    other = davey.DaveSession(1, OTHER_USER_ID, CHANNEL_ID)
    kp = other.get_serialized_key_package()
    add = mls.external_proposal(key, GROUP_ID, 0, mls.add_proposal(kp))

    session = davey.DaveSession(1, MY_USER_ID, CHANNEL_ID)
    session.set_external_sender(mls.encode_external_sender(key.public_point))
    session.get_serialized_key_package()
    result = session.process_proposals(
        davey.ProposalsOperationType.append, mls.encode_proposals([add.message])[1:]
    )
    assert result is not None and result.welcome is not None

    split = mls.split_commit_welcome(result.commit + result.welcome)
    assert split.commit_bytes == result.commit
    assert split.welcome is not None and split.welcome.raw == result.welcome
    commit = split.commit
    assert commit.group_id == GROUP_ID
    assert commit.epoch == 0
    assert commit.sender_type == mls.SENDER_MEMBER
    assert commit.sender_index == 0
    assert commit.membership_tag is not None
    assert commit.commit is not None
    assert commit.commit.refs == (add.ref,)
    assert commit.commit.inline == ()
    assert split.welcome.cipher_suite == mls.CIPHER_SUITE
    assert split.welcome.new_members == (mls.parse_key_package(kp).ref,)

    # The Welcome really is for `other`: it joins with it.
    other.set_external_sender(mls.encode_external_sender(key.public_point))
    other.process_welcome(split.welcome.raw)
    assert other.epoch == 1


def test_a_signature_from_another_key_is_rejected_by_davey() -> None:
    key, impostor = mls.SigningKey(), mls.SigningKey()
    other = davey.DaveSession(1, OTHER_USER_ID, CHANNEL_ID)
    add = mls.external_proposal(
        impostor, GROUP_ID, 0, mls.add_proposal(other.get_serialized_key_package())
    )
    session = davey.DaveSession(1, MY_USER_ID, CHANNEL_ID)
    session.set_external_sender(mls.encode_external_sender(key.public_point))
    with pytest.raises(ValueError):
        session.process_proposals(
            davey.ProposalsOperationType.append, mls.encode_proposals([add.message])[1:]
        )


def test_commit_without_welcome_and_garbage() -> None:
    key = mls.SigningKey()
    session = davey.DaveSession(1, MY_USER_ID, CHANNEL_ID)
    session.set_external_sender(mls.encode_external_sender(key.public_point))
    other = davey.DaveSession(1, OTHER_USER_ID, CHANNEL_ID)
    add = mls.external_proposal(
        key, GROUP_ID, 0, mls.add_proposal(other.get_serialized_key_package())
    )
    result = session.process_proposals(
        davey.ProposalsOperationType.append, mls.encode_proposals([add.message])[1:]
    )
    assert result is not None
    session.process_commit(result.commit)
    remove = mls.external_proposal(key, GROUP_ID, 1, mls.remove_proposal(1))
    result = session.process_proposals(
        davey.ProposalsOperationType.append, mls.encode_proposals([remove.message])[1:]
    )
    assert result is not None and result.welcome is None
    split = mls.split_commit_welcome(result.commit)
    assert split.welcome is None
    assert split.commit.epoch == 1
    assert split.commit.commit is not None and split.commit.commit.refs == (remove.ref,)

    with pytest.raises(mls.MLSError):
        mls.split_commit_welcome(result.commit[:-5])
    with pytest.raises(mls.MLSError):
        mls.split_commit_welcome(add.message)  # a proposal, not a commit
    with pytest.raises(mls.MLSError):
        mls.split_commit_welcome(result.commit + b"\x00\x02\x01")  # a broken Welcome


# -- op 26 -------------------------------------------------------------------------------


def test_captured_key_package_validates() -> None:
    message = captured_add()
    assert message.proposal is not None and message.proposal.key_package is not None
    kp = mls.validate_key_package(message.proposal.key_package.raw, OTHER_USER_ID)
    assert kp.cipher_suite == mls.CIPHER_SUITE
    assert kp.leaf_node.lifetime == mls.MAX_LIFETIME
    assert kp.leaf_node.capabilities.credentials == (mls.CREDENTIAL_BASIC,)


def test_davey_key_package_validates_and_tampering_is_caught() -> None:
    session = davey.DaveSession(1, MY_USER_ID, CHANNEL_ID)
    raw = session.get_serialized_key_package()
    kp = mls.validate_key_package(raw, MY_USER_ID)
    assert kp.user_id == MY_USER_ID

    with pytest.raises(mls.MLSError, match="identity"):
        mls.validate_key_package(raw, OTHER_USER_ID)
    with pytest.raises(mls.MLSError, match="signature"):
        mls.validate_key_package(raw[:-1] + bytes([raw[-1] ^ 1]), MY_USER_ID)
    # The init key is signed too.
    tampered = bytearray(raw)
    tampered[10] ^= 1
    with pytest.raises(mls.MLSError, match="signature"):
        mls.validate_key_package(bytes(tampered), MY_USER_ID)
    with pytest.raises(mls.MLSError):
        mls.validate_key_package(raw[:100], MY_USER_ID)
    with pytest.raises(mls.MLSError, match="trailing"):
        mls.validate_key_package(raw + b"\x00", MY_USER_ID)


def test_key_package_lifetime_must_be_the_maximum() -> None:
    session = davey.DaveSession(1, MY_USER_ID, CHANNEL_ID)
    raw = session.get_serialized_key_package()
    at = raw.index(b"\x00" * 8 + b"\xff" * 8) + 8  # not_before 0, not_after 2^64-1
    shortened = raw[:at] + b"\x7f" + raw[at + 1 :]
    with pytest.raises(mls.MLSError, match="lifetime"):
        mls.validate_key_package(shortened, MY_USER_ID)
