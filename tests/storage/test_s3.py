"""S3Storage against real moto S3 servers on 127.0.0.1."""

from __future__ import annotations

import re
import time

import boto3
import httpx
import pytest

from conftest import AuthS3, CuttingProxy, MotoServer, make_bucket
from stylebot.config import Settings
from stylebot.storage import (
    BucketNotFoundError,
    InvalidKeyError,
    KeyNotFoundError,
    StorageAuthError,
    StorageUnavailableError,
    make_storage,
)
from stylebot.storage.s3 import S3Storage

HOUR = 3600.0
HEX32 = "0123456789abcdef" * 2


def _storage(endpoint: str, bucket: str, **kwargs: object) -> S3Storage:
    options: dict[str, object] = {
        "endpoint_url": endpoint,
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
        "max_attempts": 3,
        "connect_timeout_s": 2.0,
        "read_timeout_s": 10.0,
    }
    options.update(kwargs)
    return S3Storage(bucket, **options)  # type: ignore[arg-type]


@pytest.fixture
def storage(s3_endpoint: str) -> S3Storage:
    return _storage(s3_endpoint, make_bucket(s3_endpoint))


async def test_round_trip_list_delete(storage: S3Storage) -> None:
    await storage.check()
    key = await storage.put(b"photo", scope="chat:42", name="../content.jpg", content_type="image/jpeg")
    assert re.fullmatch(r"stylebot/chat_42\.[0-9a-f]{10}-[0-9a-f]{32}/content\.jpg", key)
    assert await storage.get(key) == b"photo"
    assert await storage.exists(key)
    record = storage.record_key("jobs", "j1.json")
    await storage.put_at(record, b'{"state": "queued"}')
    await storage.put_at(record, b'{"state": "done"}')
    assert await storage.get(record) == b'{"state": "done"}'
    assert await storage.list(storage.record_prefix("jobs")) == [record]
    assert sorted(await storage.list("stylebot/")) == sorted([key, record])
    await storage.delete(key)
    assert not await storage.exists(key)
    with pytest.raises(KeyNotFoundError):
        await storage.get(key)


async def test_list_ignores_foreign_objects(storage: S3Storage, s3_endpoint: str) -> None:
    raw = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    raw.put_object(Bucket=storage.bucket, Key="stylebot/not-ours.txt", Body=b"x")
    raw.put_object(Bucket=storage.bucket, Key="elsewhere/file.txt", Body=b"x")
    key = await storage.put(b"mine", scope="chat:1", name="a.jpg")
    assert await storage.list("stylebot/") == [key]
    assert await storage.expire(now=time.time() + 1000 * HOUR) == 1
    # Objects outside our layout are never deleted by expiry.
    assert {o["Key"] for o in raw.list_objects_v2(Bucket=storage.bucket)["Contents"]} == {
        "stylebot/not-ours.txt",
        "elsewhere/file.txt",
    }


@pytest.mark.parametrize(
    "key",
    [
        "../x",
        "/etc/passwd",
        f"stylebot/chat-{HEX32}/../../x",
        f"stylebot/chat-{HEX32}/a\x00b",
        "stylebot/%2e%2e/x",
        "stylebot\\..\\x",
        f"other/chat-{HEX32}/x.jpg",
        "http://169.254.169.254/",
    ],
)
async def test_hostile_keys_refused_before_any_request(key: str) -> None:
    # An endpoint nothing listens on: a refusal must come from key validation, not the network.
    storage = _storage("http://127.0.0.1:9", "bucket-x", max_attempts=1)
    for call in (
        storage.get(key),
        storage.exists(key),
        storage.delete(key),
        storage.put_at(key, b"x"),
        storage.presigned_url(key),
    ):
        with pytest.raises(InvalidKeyError):
            await call


async def test_expire_honours_each_retention(storage: S3Storage) -> None:
    data = await storage.put(b"input", scope="chat:1", name="content.jpg")
    ok_nb = await storage.put_notebook(b"{}", scope="chat:1", name="nst.ipynb", failed=False)
    failed_nb = await storage.put_notebook(b"{}", scope="chat:1", name="nst.ipynb", failed=True)
    record = storage.record_key("jobs", "j.json")
    await storage.put_at(record, b"{}")
    now = time.time()
    assert await storage.expire(now=now) == 0
    assert await storage.expire(now=now + 25 * HOUR) == 2
    assert sorted(await storage.list("stylebot/")) == sorted([failed_nb, record])
    assert not await storage.exists(data) and not await storage.exists(ok_nb)
    assert await storage.expire(now=now + 15 * 24 * HOUR) == 1
    assert await storage.list("stylebot/") == [record]


async def test_presigned_url_serves_the_bytes(s3_endpoint: str) -> None:
    storage = _storage(
        s3_endpoint,
        make_bucket(s3_endpoint),
        aws_access_key_id="AKIAPRESIGNKEY000001",
        aws_secret_access_key="presign-secret-do-not-leak",
    )
    key = await storage.put(b"\xff\xd8 jpeg bytes", scope="chat:1", name="result.jpg")
    url = await storage.presigned_url(key, expires_s=60)
    assert url is not None and url.startswith(f"{s3_endpoint}/{storage.bucket}/{key}?")
    assert "X-Amz-Signature=" in url and "X-Amz-Expires=60" in url
    assert "presign-secret" not in url
    async with httpx.AsyncClient() as client:
        response = await client.get(url)
    assert response.status_code == 200
    assert response.content == b"\xff\xd8 jpeg bytes"
    async with httpx.AsyncClient() as client:
        tampered = await client.get(url.replace("result.jpg", "other.jpg"))
    assert tampered.status_code in (403, 404)


async def test_missing_bucket_is_named_clearly(s3_endpoint: str) -> None:
    storage = _storage(s3_endpoint, "no-such-bucket-stylebot")
    with pytest.raises(BucketNotFoundError, match="no-such-bucket-stylebot") as info:
        await storage.check()
    assert "does not exist" in str(info.value)
    with pytest.raises(BucketNotFoundError, match="no-such-bucket-stylebot"):
        await storage.put(b"x", scope="chat:1", name="a.jpg")
    with pytest.raises(BucketNotFoundError, match="no-such-bucket-stylebot"):
        await storage.list("stylebot/")


async def test_right_credentials_work_with_auth_enforced(auth_s3: AuthS3) -> None:
    storage = _storage(
        auth_s3.endpoint,
        auth_s3.bucket,
        aws_access_key_id=auth_s3.key_id,
        aws_secret_access_key=auth_s3.secret,
    )
    await storage.check()
    key = await storage.put(b"ok", scope="chat:1", name="a.jpg")
    assert await storage.get(key) == b"ok"


@pytest.mark.parametrize("wrong", ["secret", "key_id"])
async def test_wrong_credentials_give_clear_error_without_secrets(auth_s3: AuthS3, wrong: str) -> None:
    bad_secret = "wrong-secret-value-1234567890abcdef"
    key_id = "AKIAWRONGWRONGWRONG1" if wrong == "key_id" else auth_s3.key_id
    storage = _storage(
        auth_s3.endpoint, auth_s3.bucket, aws_access_key_id=key_id, aws_secret_access_key=bad_secret
    )
    for call in (storage.check(), storage.put(b"x", scope="chat:1", name="a.jpg"), storage.list("stylebot/")):
        with pytest.raises(StorageAuthError) as info:
            await call
        message = str(info.value)
        assert auth_s3.bucket in message
        assert bad_secret not in message and key_id not in message and auth_s3.secret not in message


async def test_server_gone_gives_clear_error_and_restart_is_seen(own_moto: MotoServer) -> None:
    bucket = make_bucket(own_moto.endpoint)
    storage = _storage(
        own_moto.endpoint,
        bucket,
        aws_access_key_id="AKIATESTKEY000000001",
        aws_secret_access_key="server-gone-secret-123456",
    )
    key = await storage.put(b"before", scope="chat:1", name="a.jpg")
    own_moto.stop()
    with pytest.raises(StorageUnavailableError) as info:
        await storage.put(b"during" * 1000, scope="chat:1", name="b.jpg")
    message = str(info.value)
    assert own_moto.endpoint in message and "3 attempts" in message
    assert "server-gone-secret" not in message and "AKIATESTKEY" not in message

    own_moto.start()  # moto keeps state in memory: the restarted server is empty
    with pytest.raises(BucketNotFoundError):
        await storage.get(key)


async def test_restarted_server_is_used_again(own_moto: MotoServer) -> None:
    bucket = make_bucket(own_moto.endpoint)
    storage = _storage(own_moto.endpoint, bucket)
    await storage.put(b"before", scope="chat:1", name="a.jpg")
    own_moto.stop()
    own_moto.start()
    boto3.client(
        "s3",
        endpoint_url=own_moto.endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).create_bucket(Bucket=bucket)
    key = await storage.put(b"after restart", scope="chat:1", name="a.jpg")
    assert await storage.get(key) == b"after restart"


async def test_upload_cut_midway_is_retried(s3_endpoint: str, cutting_proxy: CuttingProxy) -> None:
    bucket = make_bucket(s3_endpoint)
    storage = _storage(f"http://127.0.0.1:{cutting_proxy.port}", bucket)
    payload = bytes(range(256)) * 2048  # 512 KiB
    cutting_proxy.cut_next_upload(after_bytes=64 * 1024)
    key = await storage.put(payload, scope="chat:1", name="big.bin")
    assert cutting_proxy.cuts == 1
    assert cutting_proxy.connections >= 2
    assert await _storage(s3_endpoint, bucket).get(key) == payload


async def test_upload_cut_every_time_ends_in_storage_error(
    s3_endpoint: str, cutting_proxy: CuttingProxy
) -> None:
    bucket = make_bucket(s3_endpoint)
    storage = _storage(f"http://127.0.0.1:{cutting_proxy.port}", bucket)
    cutting_proxy.cut_every_upload(after_bytes=32 * 1024)
    with pytest.raises(StorageUnavailableError, match="3 attempts"):
        await storage.put(b"z" * (256 * 1024), scope="chat:1", name="big.bin")
    assert cutting_proxy.cuts >= 3
    # Nothing half-written became visible.
    assert await _storage(s3_endpoint, bucket).list("stylebot/") == []


def test_make_storage_from_settings(s3_endpoint: str) -> None:
    bucket = make_bucket(s3_endpoint)
    settings = Settings(
        s3_bucket=bucket,
        s3_endpoint_url=s3_endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        s3_prefix="/bot/",
    )
    storage = make_storage(settings)
    assert isinstance(storage, S3Storage)
    assert storage.new_key(scope="chat:1", name="a.jpg").startswith("bot/chat_1.")
    assert "testing" not in repr(storage)
