"""C2SP signed notes and tlog checkpoints: checked against notes, keys and checkpoints made by the Go implementation
(golang.org/x/mod/sumdb/note and sum.golang.org), and every malformation rejected."""

from __future__ import annotations

import base64
import hashlib

import pytest

from services.common.ledger.note import (
    MAX_TREE_SIZE,
    Checkpoint,
    NoteError,
    NoteSigner,
    NoteVerifier,
    generate_note_key,
    parse_checkpoint,
)

# The example of golang.org/x/mod/sumdb/note (package documentation and note_test.go).
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
PETER_SIG = (
    "\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)
ENOCH_SIG = (
    "\u2014 EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n"
)
PETER_NOTE = TEXT + "\n" + PETER_SIG

# Checkpoints signed by sum.golang.org, the Go checksum database, with its published key.
SUMDB_VKEY = "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8"
SUMDB_CHECKPOINTS = [
    (
        "go.sum database tree\n31700353\nqINS1GRFhWHwdkUeqLEoP4yEMkTBBzxBkGwGQlVlVcs=\n\n"
        "\u2014 sum.golang.org Az3grnmrIUEDFqHzAElIQCPNoRFRAAdFo47fooyWKMHb89k11GJh5zHIf"
        "NCOBmwn/C3YI8oW9/C8DJ87F61QqspBYwM=\n",
        31700353,
        "qINS1GRFhWHwdkUeqLEoP4yEMkTBBzxBkGwGQlVlVcs=",
    ),
    (
        "go.sum database tree\n65209736\n5+uGFjx6xBZG8ip1+wi77v+grwbhhukIrxEUS8PXvRo=\n\n"
        "\u2014 sum.golang.org Az3grnbssgK7ubgFX36gVETtNv0U23qxyAhAMai2QUfeGa3nB/akvkMdl"
        "UErfcZz7l/R3cVtYspg3dxXABkGZZKdsQ8=\n",
        65209736,
        "5+uGFjx6xBZG8ip1+wi77v+grwbhhukIrxEUS8PXvRo=",
    ),
]

ROOT = hashlib.sha256(b"root").digest()
ROOT64 = base64.b64encode(ROOT).decode()


# --- Interoperability: someone else's bytes ---


def test_signs_the_go_example_note_byte_for_byte() -> None:
    signer = NoteSigner(PETER_SKEY)
    assert (signer.name, signer.vkey) == ("PeterNeumann", PETER_VKEY)
    assert signer.sign(TEXT) == PETER_NOTE


def test_verifies_the_go_example_note() -> None:
    assert NoteVerifier(PETER_VKEY).verify(PETER_NOTE) == TEXT
    assert NoteVerifier(PETER_VKEY).verify(PETER_NOTE.encode()) == TEXT


def test_verifies_each_signer_of_the_go_doubly_signed_note_and_ignores_the_other() -> None:
    doubly = TEXT + "\n" + PETER_SIG + ENOCH_SIG
    assert NoteVerifier(PETER_VKEY).verify(doubly) == TEXT
    assert NoteVerifier(ENOCH_VKEY).verify(doubly) == TEXT


@pytest.mark.parametrize(("note", "size", "root"), SUMDB_CHECKPOINTS)
def test_verifies_checkpoints_signed_by_sum_golang_org(note: str, size: int, root: str) -> None:
    checkpoint = parse_checkpoint(NoteVerifier(SUMDB_VKEY).verify(note))
    assert checkpoint == Checkpoint("go.sum database tree", size, base64.b64decode(root))
    assert checkpoint.body() == note[: note.index("\n\n") + 1]


def test_parses_the_c2sp_example_checkpoint() -> None:
    body = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    checkpoint = parse_checkpoint(body)
    assert (checkpoint.origin, checkpoint.size, checkpoint.extensions) == ("example.com/behind-the-sofa", 20852163, ())
    assert checkpoint.body() == body


# --- Keys ---


def test_generated_keys_follow_the_go_key_formats() -> None:
    private_text, vkey = generate_note_key("localhost/custody/runs")
    name, hash_hex, key64 = vkey.split("+", 2)
    material = base64.b64decode(key64)
    assert name == "localhost/custody/runs"
    assert material[0] == 1 and len(material) == 33
    assert hash_hex == hashlib.sha256(name.encode() + b"\n" + material).digest()[:4].hex()
    assert private_text.startswith(f"PRIVATE+KEY+{name}+{hash_hex}+")
    signer = NoteSigner(private_text)
    assert signer.vkey == vkey
    assert NoteVerifier(vkey).verify(signer.sign("hello\n")) == "hello\n"


def test_signatures_from_another_key_of_the_same_name_do_not_verify() -> None:
    private_text, _ = generate_note_key("PeterNeumann")
    with pytest.raises(NoteError, match="not signed by PeterNeumann"):
        NoteVerifier(PETER_VKEY).verify(NoteSigner(private_text).sign(TEXT))
    with pytest.raises(NoteError, match="not signed by EnochRoot"):
        NoteVerifier(ENOCH_VKEY).verify(PETER_NOTE)


@pytest.mark.parametrize("name", ["", "a b", "a+b", "tab\there", "new\nline", "nbsp\u00a0name"])
def test_key_names_must_be_non_empty_without_spaces_or_plus(name: str) -> None:
    with pytest.raises(NoteError):
        generate_note_key(name)


def test_every_mangling_of_a_verifier_key_is_refused() -> None:
    # As note_test.go does: every proper substring, and every character changed.
    for start in range(len(PETER_VKEY)):
        for end in range(start + 1, len(PETER_VKEY) + 1):
            if (start, end) != (0, len(PETER_VKEY)):
                with pytest.raises(NoteError):
                    NoteVerifier(PETER_VKEY[start:end])
    for position in range(len(PETER_VKEY)):
        changed = PETER_VKEY[:position] + chr(ord(PETER_VKEY[position]) + 1) + PETER_VKEY[position + 1 :]
        with pytest.raises(NoteError):
            NoteVerifier(changed)


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz", "fields|PRIVATE"),
        ("PRIVATE+KEY+PeterNeumann+c74f20a4+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz", "does not match"),
        ("PRIVATE+KEY+PeterNeumann+C74F20A3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz", "lower-case hex"),
        ("PRIVATE+KEY+EnochRoot+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz", "does not match"),
        ("PRIVATE+KEY+PeterNeumann+c74f20a3+AoEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz", "Ed25519"),
        ("PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKD", "base64"),
        ("PRIVATE+KEY+PeterNeumann+c74f20a3+" + PETER_VKEY.split("+", 2)[2], "does not match"),
    ],
)
def test_malformed_private_keys_are_refused(key: str, message: str) -> None:
    with pytest.raises(NoteError, match=message):
        NoteSigner(key)


def test_a_signer_never_shows_its_private_key() -> None:
    signer = NoteSigner(PETER_SKEY)
    assert "AYEKFALV" not in repr(signer) and repr(signer) == f"NoteSigner({PETER_VKEY!r})"


# --- Malformed notes ---

BAD_NOTES = {
    # The malformed messages of note_test.go.
    "only the text": TEXT,
    "no signature after the blank line": TEXT + "\n",
    "no final newline": TEXT + "\n" + PETER_SIG[:-1],
    "a control character": "\x01" + TEXT + "\n" + PETER_SIG,
    "a space in the key name": TEXT + "\n" + PETER_SIG.replace("PeterNeumann", "Bad Name"),
    "an unexpected line": TEXT + "\n" + PETER_SIG + "Unexpected line.\n",
    # And more.
    "no blank line": TEXT + PETER_SIG,
    "a hyphen for the em dash": TEXT + "\n" + PETER_SIG.replace("\u2014", "-"),
    "an en dash for the em dash": TEXT + "\n" + PETER_SIG.replace("\u2014", "\u2013"),
    "no space after the dash": TEXT + "\n" + PETER_SIG.replace("\u2014 ", "\u2014"),
    "no signature after the name": TEXT + "\n\u2014 PeterNeumann\n",
    "an empty signature": TEXT + "\n\u2014 PeterNeumann \n",
    "a signature that is not base64": TEXT + "\n\u2014 PeterNeumann x08go/ZJ*uBS9UG==\n",
    "a signature without padding": TEXT + "\n" + PETER_SIG.replace("AM=\n", "AM\n"),
    "a signature with stray bits": TEXT + "\n" + PETER_SIG.replace("AM=\n", "AN=\n"),
    "a signature of only the key hash": TEXT + "\n\u2014 PeterNeumann x08gow==\n",
    "a signature one byte long": TEXT + "\n\u2014 PeterNeumann x08go/w=\n",
    "a carriage return": TEXT.replace("\n", "\r\n", 1) + "\n" + PETER_SIG,
    "a tab": TEXT.replace(" ", "\t", 1) + "\n" + PETER_SIG,
    "a lone surrogate": "\ud800" + TEXT + "\n" + PETER_SIG,
    "an empty line among the signatures": TEXT + "\n" + PETER_SIG + "\n" + ENOCH_SIG,
    "a malformed line from another key": TEXT + "\n" + PETER_SIG + "\u2014 EnochRoot !!!!\n",
}


@pytest.mark.parametrize("note", BAD_NOTES.values(), ids=BAD_NOTES.keys())
def test_malformed_notes_are_refused(note: str) -> None:
    with pytest.raises(NoteError):
        NoteVerifier(PETER_VKEY).verify(note)


def test_notes_that_are_not_utf8_are_refused() -> None:
    with pytest.raises(NoteError, match="not valid UTF-8"):
        NoteVerifier(PETER_VKEY).verify(b"\xff" + PETER_NOTE.encode())
    with pytest.raises(NoteError, match="not valid UTF-8"):
        NoteVerifier(PETER_VKEY).verify(PETER_NOTE.encode().replace("\u2014".encode(), b"\xe2\x80"))


def test_at_most_100_signatures_are_read() -> None:
    assert NoteVerifier(PETER_VKEY).verify(TEXT + "\n" + PETER_SIG * 100) == TEXT
    with pytest.raises(NoteError, match="101 signatures"):
        NoteVerifier(PETER_VKEY).verify(TEXT + "\n" + PETER_SIG * 101)
    with pytest.raises(NoteError, match="101 signatures"):
        NoteVerifier(PETER_VKEY).verify(TEXT + "\n" + ENOCH_SIG * 100 + PETER_SIG)


def test_a_bad_signature_by_the_known_key_rejects_the_note() -> None:
    # note_test.go: four characters inserted into the signature.
    tampered = TEXT + "\n" + PETER_SIG[:60] + "ABCD" + PETER_SIG[60:]
    with pytest.raises(NoteError, match="signature by PeterNeumann\\+c74f20a3 is invalid"):
        NoteVerifier(PETER_VKEY).verify(tampered)
    with pytest.raises(NoteError, match="is invalid"):
        NoteVerifier(PETER_VKEY).verify(tampered + PETER_SIG)  # the first line for the key decides


def test_a_repeated_signature_is_read_once() -> None:
    assert NoteVerifier(PETER_VKEY).verify(TEXT + "\n" + PETER_SIG + PETER_SIG + ENOCH_SIG + ENOCH_SIG) == TEXT


def test_the_body_is_everything_before_the_last_blank_line() -> None:
    body = "first paragraph\n\nsecond paragraph\n"
    signer = NoteSigner(PETER_SKEY)
    assert NoteVerifier(PETER_VKEY).verify(signer.sign(body)) == body


def test_a_flipped_bit_anywhere_in_a_note_is_refused() -> None:
    private_text, vkey = generate_note_key("localhost/custody/runs")
    verifier = NoteVerifier(vkey)
    for note in (PETER_NOTE, NoteSigner(private_text).sign(Checkpoint("localhost/custody/runs", 7, ROOT).body())):
        key = verifier if "custody" in note else NoteVerifier(PETER_VKEY)
        key.verify(note)
        encoded = note.encode()
        accepted = []
        for position in range(len(encoded)):
            for bit in (0x01, 0x04, 0x20, 0x80):
                changed = bytearray(encoded)
                changed[position] ^= bit
                try:
                    key.verify(bytes(changed))
                except NoteError:
                    continue
                accepted.append((position, bit))
        assert accepted == []


@pytest.mark.parametrize(
    "body", ["no final newline", "", "a\x00b\n", "\ud800\n"], ids=["no newline", "empty", "NUL", "surrogate"]
)
def test_only_well_formed_bodies_are_signed(body: str) -> None:
    with pytest.raises(NoteError):
        NoteSigner(PETER_SKEY).sign(body)


# --- Checkpoints ---


def test_a_checkpoint_body_is_origin_size_and_base64_root() -> None:
    checkpoint = Checkpoint("localhost/custody/runs", 42, ROOT)
    assert checkpoint.body() == f"localhost/custody/runs\n42\n{ROOT64}\n"
    assert parse_checkpoint(checkpoint.body()) == checkpoint


def test_extension_lines_follow_the_root() -> None:
    checkpoint = Checkpoint("o", 0, ROOT, ("ext one", "ext two"))
    assert checkpoint.body() == f"o\n0\n{ROOT64}\next one\next two\n"
    assert parse_checkpoint(checkpoint.body()) == checkpoint


def test_a_signed_checkpoint_verifies_only_under_its_own_origin() -> None:
    private_text, vkey = generate_note_key("localhost/custody/runs")
    signer = NoteSigner(private_text)
    checkpoint = Checkpoint("localhost/custody/runs", 3, ROOT)
    assert NoteVerifier(vkey).verify_checkpoint(signer.sign(checkpoint.body())) == checkpoint
    with pytest.raises(NoteError, match="origin 'localhost/custody/lineage' is not the key name"):
        NoteVerifier(vkey).verify_checkpoint(signer.sign(Checkpoint("localhost/custody/lineage", 3, ROOT).body()))


BAD_CHECKPOINTS = {
    "empty origin": f"\n5\n{ROOT64}\n",
    "two lines": "origin\n5\n",
    "no final newline": f"origin\n5\n{ROOT64}",
    "empty": "",
    "leading zero": f"origin\n05\n{ROOT64}\n",
    "negative size": f"origin\n-1\n{ROOT64}\n",
    "plus sign": f"origin\n+5\n{ROOT64}\n",
    "space before the size": f"origin\n 5\n{ROOT64}\n",
    "space after the size": f"origin\n5 \n{ROOT64}\n",
    "empty size": f"origin\n\n{ROOT64}\n",
    "hex size": f"origin\n0x10\n{ROOT64}\n",
    "underscored size": f"origin\n1_000\n{ROOT64}\n",
    "non-ASCII digits": f"origin\n\u0665\n{ROOT64}\n",
    "fractional size": f"origin\n5.0\n{ROOT64}\n",
    "size beyond int64": f"origin\n{MAX_TREE_SIZE + 1}\n{ROOT64}\n",
    "root not base64": "origin\n5\nnot*base64\n",
    "root of 31 bytes": f"origin\n5\n{base64.b64encode(ROOT[:31]).decode()}\n",
    "root of 33 bytes": f"origin\n5\n{base64.b64encode(ROOT + b'x').decode()}\n",
    "root without padding": f"origin\n5\n{ROOT64.rstrip('=')}\n",
    "root with stray bits": f"origin\n5\n{ROOT64[:-2]}{chr(ord(ROOT64[-2]) ^ 1)}=\n",
    "root in URL-safe base64": "origin\n5\n" + base64.urlsafe_b64encode(b"\xfb" * 32).decode() + "\n",
    "empty root": "origin\n5\n\n",
    "empty extension line": f"origin\n5\n{ROOT64}\n\next\n",
    "control character": f"ori\x07gin\n5\n{ROOT64}\n",
}


@pytest.mark.parametrize("body", BAD_CHECKPOINTS.values(), ids=BAD_CHECKPOINTS.keys())
def test_malformed_checkpoints_are_refused(body: str) -> None:
    with pytest.raises(NoteError):
        parse_checkpoint(body)


def test_the_largest_and_smallest_sizes_parse() -> None:
    assert parse_checkpoint(f"o\n0\n{ROOT64}\n").size == 0
    assert parse_checkpoint(f"o\n{MAX_TREE_SIZE}\n{ROOT64}\n").size == MAX_TREE_SIZE


@pytest.mark.parametrize(
    ("origin", "size", "root", "extensions"),
    [
        ("", 1, ROOT, ()),
        ("two\nlines", 1, ROOT, ()),
        ("o", -1, ROOT, ()),
        ("o", True, ROOT, ()),
        ("o", MAX_TREE_SIZE + 1, ROOT, ()),
        ("o", 1, ROOT[:31], ()),
        ("o", 1, ROOT, ("",)),
        ("o", 1, ROOT, ("a\nb",)),
    ],
)
def test_checkpoints_that_could_not_be_parsed_back_cannot_be_made(
    origin: str, size: int, root: bytes, extensions: tuple[str, ...]
) -> None:
    with pytest.raises(NoteError):
        Checkpoint(origin, size, root, extensions)
