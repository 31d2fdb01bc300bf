"""How a running service follows its credentials file (services/common/credentials_watch.py): changes are seen at
the first call after the check interval, however the file was changed, and a file that became unusable makes the
service refuse everyone (fail closed) until it is good again. The clock is the test's, so nothing here waits."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from services.common.credentials_watch import CredentialsFile
from services.common.errors import Unauthenticated, Unavailable
from services.common.identity import (
    CredentialEntry,
    Credentials,
    CredentialsError,
    Principal,
    PrincipalKind,
    new_token,
    token_digest,
)

ANA = Principal("human:ana", PrincipalKind.HUMAN, frozenset({"reviewer"}))
BEN = Principal("human:ben", PrincipalKind.HUMAN, frozenset({"operator"}))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def pass_interval(self) -> None:
        self.now += 1.0


def document(*principals: tuple[Principal, str]) -> Credentials:
    return Credentials(CredentialEntry(p, token_digest(t)) for p, t in principals)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "credentials"


def bearer(token: str) -> str:
    return f"Bearer {token}"


def reason_refusing(watched: CredentialsFile, token: str) -> str:
    with pytest.raises((Unauthenticated, Unavailable)) as raised:
        watched.authenticate(bearer(token))
    return f"{raised.value.code.value} {raised.value.reason}"


def test_a_revocation_written_atomically_is_refused_after_the_interval(path: Path, clock: Clock) -> None:
    ana, ben = new_token(), new_token()
    document((ANA, ana), (BEN, ben)).save(path)
    watched = CredentialsFile(path, check_interval_s=1.0, clock=clock)
    assert watched.authenticate(bearer(ana)) == ANA
    document((BEN, ben)).save(path)
    clock.pass_interval()
    assert reason_refusing(watched, ana) == "UNAUTHENTICATED TOKEN_INVALID"
    assert watched.authenticate(bearer(ben)) == BEN


def test_an_added_principal_is_accepted_after_the_interval(path: Path, clock: Clock) -> None:
    ana, ben = new_token(), new_token()
    document((ANA, ana)).save(path)
    watched = CredentialsFile(path, clock=clock)
    document((ANA, ana), (BEN, ben)).save(path)
    clock.pass_interval()
    assert watched.authenticate(bearer(ben)) == BEN


def test_an_added_principal_is_accepted_at_once_by_a_service_that_checked_within_the_interval(
    path: Path, clock: Clock
) -> None:
    """Replicas share the file: one accepting a new person's token must not leave another refusing it."""
    ana, ben = new_token(), new_token()
    document((ANA, ana)).save(path)
    watched = CredentialsFile(path, check_interval_s=1.0, clock=clock)
    clock.pass_interval()
    assert watched.authenticate(bearer(ana)) == ANA  # checked just now
    document((ANA, ana), (BEN, ben)).save(path)
    clock.now += 0.1
    assert watched.authenticate(bearer(ben)) == BEN
    assert reason_refusing(watched, new_token()) == "UNAUTHENTICATED TOKEN_INVALID"


def test_calls_within_the_interval_do_not_touch_the_file(path: Path, clock: Clock) -> None:
    """Authentication stays cheap: even a deleted file goes unnoticed until the next check is due."""
    ana = new_token()
    document((ANA, ana)).save(path)
    watched = CredentialsFile(path, check_interval_s=1.0, clock=clock)
    path.unlink()
    clock.now += 0.5
    assert watched.authenticate(bearer(ana)) == ANA


def test_an_in_place_rewrite_that_restores_size_and_mtime_is_still_seen(path: Path, clock: Clock) -> None:
    ana, ben = new_token(), new_token()
    document((ANA, ana)).save(path)
    before = path.stat()
    watched = CredentialsFile(path, clock=clock)
    swapped = path.read_text().replace(token_digest(ana), token_digest(ben))
    with path.open("r+") as handle:  # same inode, same size
        handle.write(swapped)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (path.stat().st_ino, path.stat().st_size, path.stat().st_mtime_ns) == (
        before.st_ino,
        before.st_size,
        before.st_mtime_ns,
    )
    clock.pass_interval()
    assert reason_refusing(watched, ana) == "UNAUTHENTICATED TOKEN_INVALID"
    assert watched.authenticate(bearer(ben)).id == "human:ana"


def test_a_kubernetes_style_symlink_swap_is_seen(tmp_path: Path, clock: Clock) -> None:
    """The kubelet writes a Secret's new version to a new directory and renames a `..data` symlink onto it; the
    mounted file name is a symlink through `..data`."""
    ana, ben = new_token(), new_token()
    volume = tmp_path / "secret-volume"
    (volume / "..2026_01_01").mkdir(parents=True)
    document((ANA, ana)).save(volume / "..2026_01_01" / "credentials")
    (volume / "..data").symlink_to("..2026_01_01")
    (volume / "credentials").symlink_to("..data/credentials")
    watched = CredentialsFile(volume / "credentials", clock=clock)
    assert watched.authenticate(bearer(ana)) == ANA
    (volume / "..2026_01_02").mkdir()
    document((BEN, ben)).save(volume / "..2026_01_02" / "credentials")
    (volume / "..data_tmp").symlink_to("..2026_01_02")
    os.replace(volume / "..data_tmp", volume / "..data")
    clock.pass_interval()
    assert reason_refusing(watched, ana) == "UNAUTHENTICATED TOKEN_INVALID"
    assert watched.authenticate(bearer(ben)) == BEN


@pytest.mark.parametrize("breakage", ["malformed", "not JSON", "missing", "not UTF-8"])
def test_a_file_that_became_unusable_refuses_everyone_until_it_is_good_again(
    path: Path, clock: Clock, caplog: pytest.LogCaptureFixture, breakage: str
) -> None:
    ana = new_token()
    document((ANA, ana)).save(path)
    good = path.read_text()
    watched = CredentialsFile(path, clock=clock)
    if breakage == "malformed":
        path.write_text(good.replace('"human"', '"robot"'))
    elif breakage == "not JSON":
        path.write_text(good[: len(good) // 2])
    elif breakage == "missing":
        path.unlink()
    else:
        path.write_bytes(b"\xff\xfe" + good.encode())
    clock.pass_interval()
    with caplog.at_level(logging.ERROR, logger="custody.credentials"):
        assert reason_refusing(watched, ana) == "UNAVAILABLE CREDENTIALS_UNAVAILABLE"
        assert reason_refusing(watched, ana) == "UNAVAILABLE CREDENTIALS_UNAVAILABLE"  # still, within the interval
        clock.pass_interval()
        assert reason_refusing(watched, ana) == "UNAVAILABLE CREDENTIALS_UNAVAILABLE"
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2  # one per check while it lasts, not one per call
    assert all(str(path) in r.getMessage() for r in errors)
    path.write_text(good)
    clock.pass_interval()
    assert watched.authenticate(bearer(ana)) == ANA


def test_the_refusal_tells_callers_nothing_about_the_file(path: Path, clock: Clock) -> None:
    document((ANA, new_token())).save(path)
    watched = CredentialsFile(path, clock=clock)
    path.write_text("{}")
    clock.pass_interval()
    with pytest.raises(Unavailable) as raised:
        watched.authenticate(None)
    assert str(path) not in raised.value.message and "credentials file" in raised.value.message


def test_an_unusable_file_at_start_is_a_configuration_error(path: Path) -> None:
    path.write_text("[]")
    with pytest.raises(CredentialsError, match="format version"):
        CredentialsFile(path)
