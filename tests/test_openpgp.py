"""The OpenPGP seam on the cast and on hostile input (research/openpgp-libs.md).

Each hostile case must be refused or handled with a clear reason, quickly,
and nothing unverified may reach the stored form.
"""

from __future__ import annotations

import resource
import time
import zlib

import pytest

from keys import openpgp
from keys.errors import InvalidKey, KeyTooLarge, NoKeyUploaded, SecretKeyRefused
from tests.conftest import FIXTURES


def one(data: bytes) -> openpgp.CertInfo:
    upload = openpgp.parse(data)
    assert len(upload.certs) == 1, upload
    return upload.certs[0]


def uid_values(info: openpgp.CertInfo) -> list[str]:
    return [u.value for u in info.user_ids]


def packets_of(data: bytes) -> list[openpgp.Packet]:
    return list(openpgp.iter_packets(data))


def test_it_reads_alice_with_fingerprint_key_id_and_addresses(cast):
    info = one(cast.alice.data)
    assert info.fingerprint == cast.alice.fingerprint
    assert info.key_id == cast.alice.fingerprint[-16:]
    assert info.version == 4
    assert sorted(info.emails) == ["alice@example.org", "alice@work.example.com"]
    name_only = [u for u in info.user_ids if u.value == "Alice Example"]
    assert name_only and not name_only[0].valid and name_only[0].email is None
    assert info.expires is not None and not info.revoked
    assert {s.fingerprint for s in info.subkeys} == set(cast.alice.subkeys)


def test_it_reads_binary_and_armored_alike(cast):
    armored = one(cast.alice.data)
    binary = one(openpgp.dearmor(cast.alice.data))
    assert armored.data == binary.data


def test_it_reads_a_keyring_of_three(cast):
    upload = openpgp.parse(cast.keyring3.data)
    assert [c.fingerprint for c in upload.certs] == [
        cast.alice.fingerprint,
        cast.bob.fingerprint,
        cast.carol.fingerprint,
    ]


def test_it_reads_v6_keys_with_64_hex_fingerprints(cast):
    info = one(cast.v6.data)
    assert info.version == 6
    assert len(info.fingerprint) == 64 and info.fingerprint == cast.v6.fingerprint
    assert info.key_id == info.fingerprint[:16]
    assert info.emails == ["v6@example.org"]


@pytest.mark.parametrize("name", ["alice_secret", "v6_secret", "keyring_with_secret"])
def test_it_refuses_secret_keys(cast, name):
    with pytest.raises(SecretKeyRefused):
        openpgp.parse(cast[name].data)


def test_it_refuses_binary_secret_keys():
    binary = (FIXTURES / "alice_secret.pgp").read_bytes()
    with pytest.raises(SecretKeyRefused):
        openpgp.parse(binary)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"   \n",
        b"hello, this is not a key",
        bytes(range(256)) * 4,
        b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nnot base64 at all!\n-----END PGP PUBLIC KEY BLOCK-----\n",
        b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmDMEXmAAAA==\n",
        b"\xc6\xff\xff\xff\xff\xff",  # a packet claiming 4 GiB
    ],
)
def test_it_refuses_garbage_with_a_reason(data):
    with pytest.raises(InvalidKey) as exc:
        openpgp.parse(data)
    assert exc.value.message


def test_empty_input_is_no_key(cast):
    with pytest.raises(NoKeyUploaded):
        openpgp.parse(b"")


def test_truncated_key_is_refused(cast):
    binary = openpgp.dearmor(cast.bob.data)
    with pytest.raises(InvalidKey, match="truncated"):
        openpgp.parse(binary[: len(binary) - 40])


def test_it_refuses_more_than_the_size_cap(cast):
    with pytest.raises(KeyTooLarge):
        openpgp.parse(openpgp.dearmor(cast.bob.data), openpgp.Limits(max_bytes=500))


def test_a_forged_self_signature_never_reaches_storage(cast):
    info = one(cast.forged_uid_sig.data)
    assert info.emails == ["frank@example.org"]
    assert "Frank Forged <victim@example.org>" not in uid_values(info)
    assert b"victim@example.org" not in info.data
    # Only one signature on the primary's user IDs survives: the real one.
    assert len([p for p in packets_of(info.data) if p.tag == openpgp.SIG]) == len(
        [p for p in packets_of(openpgp.publishable(info, info.emails)) if p.tag == openpgp.SIG]
    )


def test_a_forged_revocation_neither_revokes_nor_is_stored(cast):
    info = one(cast.forged_revocation.data)
    assert not info.revoked
    assert info.emails == ["grace@example.org"]
    sigs = [openpgp.parse_signature(p.body) for p in packets_of(info.data) if p.tag == openpgp.SIG]
    assert openpgp.KEY_REVOCATION not in {s.type for s in sigs}


def test_a_user_id_without_self_signature_is_dropped(cast):
    info = one(cast.erin_unsigned_uid.data)
    assert info.emails == ["erin@example.org"]
    assert b"erin.unsigned@example.org" not in info.data


def test_a_revoked_user_id_is_not_valid(cast):
    info = one(cast.carol.data)
    assert info.emails == ["carol@example.org"]
    old = next(u for u in info.user_ids if "carol.old" in u.value)
    assert old.revoked and not old.valid and "revoked" in old.reason


def test_a_revoked_key_is_revoked(cast):
    info = one(cast.alice_revoked.data)
    assert info.revoked
    published = openpgp.publishable(info, info.emails)
    assert not [p for p in packets_of(published) if p.tag == openpgp.UID]
    sigs = [openpgp.parse_signature(p.body) for p in packets_of(published) if p.tag == openpgp.SIG]
    assert openpgp.KEY_REVOCATION in {s.type for s in sigs}


def test_third_party_certifications_are_never_stored(cast):
    info = one(cast.dave_certified.data)
    sigs = [openpgp.parse_signature(p.body) for p in packets_of(info.data) if p.tag == openpgp.SIG]
    assert sigs and all(s.issuer_fpr in (None, info.fingerprint) for s in sigs)
    assert info.emails == ["dave@example.org"]


def test_a_flood_of_third_party_signatures_is_cut_before_parsing(cast):
    started = time.monotonic()
    info = one(cast.thirdparty_flood.data)
    assert time.monotonic() - started < 5
    assert info.emails == ["ivan@example.org"]
    assert len(info.data) < 2000


def test_a_flood_of_forged_self_signatures_is_refused_quickly(cast):
    started = time.monotonic()
    with pytest.raises(InvalidKey, match="self-signatures"):
        openpgp.parse(cast.sigs_flood.data)
    assert time.monotonic() - started < 5


def test_ten_thousand_user_ids_are_refused_by_the_packet_scan(cast):
    with pytest.raises(KeyTooLarge):  # 1.8 MB: the size cap comes first
        openpgp.parse(cast.uids_10k.data)
    started = time.monotonic()
    with pytest.raises(InvalidKey, match="10000 user IDs"):
        openpgp.parse(cast.uids_10k.data, openpgp.Limits(max_bytes=4 * 1024 * 1024))
    assert time.monotonic() - started < 5


def test_a_compressed_packet_bomb_is_refused_without_inflating(cast):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    with pytest.raises(InvalidKey, match="Compressed"):
        openpgp.parse(cast.zip_bomb.data)
    assert time.monotonic() - started < 2
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50_000  # KiB


def test_a_compressed_packet_inside_a_key_is_refused(cast):
    binary = openpgp.dearmor(cast.bob.data)
    bomb = bytes([0xC8]) + bytes([len(zlib.compress(b"x" * 100)) + 1]) + b"\x02" + zlib.compress(b"x" * 100)
    with pytest.raises(InvalidKey, match="Compressed"):
        openpgp.parse(binary + bomb)


def test_sha1_only_user_ids_are_kept_but_not_valid_with_the_reason(cast):
    info = one(cast.sha1_only.data)
    assert info.emails == []
    uid = info.user_ids[0]
    assert not uid.valid
    assert "SHA-1" in uid.reason and "gpg" in uid.reason


def test_rsa_above_4096_bits_is_refused_with_a_clear_message(cast):
    with pytest.raises(InvalidKey, match="4096"):
        openpgp.parse(cast.rsa_large.data)


def test_an_expired_key_is_read_with_its_expiry(cast):
    info = one(cast.expired.data)
    assert info.is_expired()
    assert info.emails == ["old@example.org"]


def test_merge_adds_the_new_subkey_and_later_expiry_and_loses_nothing(cast):
    v1, v2 = one(cast.alice.data), one(cast.alice_v2.data)
    merged = openpgp.merge(v1.data, v2.data)
    assert {s.fingerprint for s in merged.subkeys} == {s.fingerprint for s in v1.subkeys} | {
        s.fingerprint for s in v2.subkeys
    }
    assert merged.expires and v1.expires
    assert merged.expires == v2.expires and merged.expires > v1.expires
    assert merged.emails == v1.emails
    # Merging the older copy back changes nothing.
    assert openpgp.merge(merged.data, v1.data).data == merged.data


def test_a_bare_revocation_certificate_revokes_the_stored_key(cast):
    upload = openpgp.parse(cast.alice_revocation.data)
    assert not upload.certs and len(upload.revocations) == 1
    revocation = upload.revocations[0]
    assert cast.alice.fingerprint in (revocation.issuer_fpr, None)
    revoked = openpgp.add_revocation(one(cast.alice.data).data, revocation)
    assert revoked.revoked


def test_a_revocation_from_another_key_does_not_revoke(cast):
    revocation = openpgp.parse(cast.alice_revocation.data).revocations[0]
    bob = one(cast.bob.data)
    assert not openpgp.add_revocation(bob.data, revocation).revoked


def test_the_published_view_keeps_only_the_requested_addresses(cast):
    info = one(cast.alice.data)
    published = openpgp.publishable(info, ["alice@work.example.com"])
    again = one(published)
    assert [u.value for u in again.user_ids] == ["Alice Work <alice@work.example.com>"]
    assert {s.fingerprint for s in again.subkeys} == {s.fingerprint for s in info.subkeys}


def test_armor_round_trips(cast):
    info = one(cast.bob.data)
    text = openpgp.armor(info.data)
    assert text.startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")
    assert one(text.encode()).data == info.data


def test_user_attributes_and_private_packets_are_dropped(cast):
    binary = openpgp.dearmor(cast.bob.data)
    attribute = bytes([0xC0 | 17, 5]) + b"\x04\x01abc"
    sentinel_lookalike = bytes([0xC0 | 63, 16]) + b"ks-sentinel-pkt!"
    info = one(binary + attribute + sentinel_lookalike)
    assert info.data == one(binary).data


@pytest.mark.parametrize(
    "name",
    [
        "alice",
        "alice_v2",
        "alice_revoked",
        "bob",
        "carol",
        "dave_certified",
        "erin_unsigned_uid",
        "expired",
        "sha1_only",
        "v6",
        "forged_uid_sig",
        "forged_revocation",
    ],
)
def test_a_stored_form_reads_back_the_same_without_verifying_again(cast, name):
    for cert in openpgp.parse(cast[name].data).certs:
        again = openpgp.load_stored(cert.data)
        assert again == openpgp.load(cert.data)
        assert again.fingerprint == cert.fingerprint
        assert again.user_ids == cert.user_ids
        assert again.subkeys == cert.subkeys
        assert (again.expires, again.revoked, again.data) == (cert.expires, cert.revoked, cert.data)


def test_an_upload_is_contained_in_a_stored_form_only_when_it_adds_nothing(cast):
    stored = openpgp.parse(cast.alice.data).certs[0].data
    assert openpgp.contains(stored, openpgp.scan(cast.alice.data).candidates[0])
    # The third-party certification of dave is dropped before the check.
    dave = openpgp.parse(cast.dave_certified.data).certs[0].data
    assert openpgp.contains(dave, openpgp.scan(cast.dave_certified.data).candidates[0])
    # A new subkey is not contained; nor is a forged signature.
    assert not openpgp.contains(stored, openpgp.scan(cast.alice_v2.data).candidates[0])
    forged = openpgp.parse(cast.forged_uid_sig.data).certs[0].data
    assert not openpgp.contains(forged, openpgp.scan(cast.forged_uid_sig.data).candidates[0])
