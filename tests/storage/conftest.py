"""Storage fixtures: S3 buckets on the session moto server, a second moto server with IAM auth
enforced, one that a test may stop and restart, and a TCP proxy that cuts an upload midway."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import pytest
from stylebot_test_support import free_port, stop_process, wait_for_port

ADMIN_POLICY = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}


def make_bucket(endpoint: str, *, key_id: str = "testing", secret: str = "testing") -> str:
    bucket = f"stylebot-test-{uuid.uuid4().hex[:12]}"
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
    )
    client.create_bucket(Bucket=bucket)
    return bucket


@dataclass
class MotoServer:
    """A moto S3 server of a test's own, on a fixed port so it can be restarted in place."""

    port: int
    workdir: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            **self.extra_env,
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
            cwd=self.workdir,
        )
        wait_for_port(self.port, proc=self.proc)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None


@pytest.fixture
def own_moto(tmp_path: Path) -> Iterator[MotoServer]:
    server = MotoServer(free_port(), tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class AuthS3:
    endpoint: str
    bucket: str
    key_id: str
    secret: str


@pytest.fixture(scope="session")
def auth_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthS3]:
    """moto with IAM auth enforced after the first three (set-up) calls: a real user and key."""
    server = MotoServer(
        free_port(), tmp_path_factory.mktemp("moto-auth"), {"INITIAL_NO_AUTH_ACTION_COUNT": "3"}
    )
    server.start()
    try:
        iam = boto3.client(
            "iam",
            endpoint_url=server.endpoint,
            region_name="us-east-1",
            aws_access_key_id="AKIAIOSFODNN7EXAMPLE",
            aws_secret_access_key="set-up-only",
        )
        iam.create_user(UserName="stylebot")
        iam.put_user_policy(UserName="stylebot", PolicyName="all", PolicyDocument=json.dumps(ADMIN_POLICY))
        key = iam.create_access_key(UserName="stylebot")["AccessKey"]
        bucket = make_bucket(server.endpoint, key_id=key["AccessKeyId"], secret=key["SecretAccessKey"])
        yield AuthS3(server.endpoint, bucket, key["AccessKeyId"], key["SecretAccessKey"])
    finally:
        server.stop()


class CuttingProxy:
    """Forwards TCP to an upstream port; ``cut_next_upload(n)`` drops the next connection after
    it has carried ``n`` request bytes, like a server that goes away in the middle of an upload."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self.cuts = 0
        self._cut_after: int | None = None
        self._cut_always: int | None = None
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def cut_next_upload(self, after_bytes: int) -> None:
        self._cut_after = after_bytes

    def cut_every_upload(self, after_bytes: int) -> None:
        self._cut_always = after_bytes

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                cut_after, self._cut_after = self._cut_after, None
                cut_after = self._cut_always if self._cut_always is not None else cut_after
            threading.Thread(target=self._serve, args=(client, cut_after), daemon=True).start()

    def _serve(self, client: socket.socket, cut_after: int | None) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.upstream_port))

        def pump(src: socket.socket, dst: socket.socket, limit: int | None) -> None:
            carried = 0
            try:
                while chunk := src.recv(65536):
                    if limit is not None and carried + len(chunk) > limit:
                        dst.sendall(chunk[: max(0, limit - carried)])
                        with self._lock:
                            self.cuts += 1
                        break
                    dst.sendall(chunk)
                    carried += len(chunk)
            except OSError:
                pass
            finally:
                for s in (src, dst):
                    with contextlib.suppress(OSError):
                        s.shutdown(socket.SHUT_RDWR)
                    s.close()

        threading.Thread(target=pump, args=(upstream, client, None), daemon=True).start()
        pump(client, upstream, cut_after)

    def close(self) -> None:
        self._closed = True
        self.listener.close()


@pytest.fixture
def cutting_proxy(s3_endpoint: str) -> Iterator[CuttingProxy]:
    proxy = CuttingProxy(int(s3_endpoint.rsplit(":", 1)[1]))
    try:
        yield proxy
    finally:
        proxy.close()
