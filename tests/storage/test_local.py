"""LocalStorage: generated keys, no way out of the folder, atomic writes, retention."""

from __future__ import annotations

import asyncio
import os
import re
import threading
import time
from pathlib import Path

import pytest

from stylebot.config import Settings
from stylebot.storage import InvalidKeyError, KeyNotFoundError, make_storage
from stylebot.storage.local import LocalStorage

HEX32 = "0123456789abcdef" * 2
HOUR = 3600.0


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder next to the storage root holding a secret no key may reach."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "secret.txt").write_bytes(b"top secret")
    return folder


@pytest.fixture
def storage(root: Path) -> LocalStorage:
    return LocalStorage(root, retention_hours=24, failed_notebook_retention_hours=24 * 14)


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


async def test_put_generates_scoped_key_and_round_trips(storage: LocalStorage, root: Path) -> None:
    key = await storage.put(b"photo bytes", scope="chat:123", name="content.jpg")
    assert re.fullmatch(r"stylebot/chat_123\.[0-9a-f]{10}-[0-9a-f]{32}/content\.jpg", key)
    assert await storage.get(key) == b"photo bytes"
    assert await storage.exists(key)
    assert (root / key).read_bytes() == b"photo bytes"


async def test_same_name_twice_gives_two_keys(storage: LocalStorage) -> None:
    first = await storage.put(b"a", scope="chat:1", name="x.jpg")
    second = await storage.put(b"b", scope="chat:1", name="x.jpg")
    assert first != second
    assert (await storage.get(first), await storage.get(second)) == (b"a", b"b")


@pytest.mark.parametrize(
    ("scope", "name", "expected"),
    [
        ("../../etc", "../../passwd", r"stylebot/etc\.[0-9a-f]{10}-[0-9a-f]{32}/passwd"),
        ("/abs", "C:\\Windows\\evil.jpg", r"stylebot/abs\.[0-9a-f]{10}-[0-9a-f]{32}/evil\.jpg"),
        ("chat:1", ".hidden", r"stylebot/chat_1\.[0-9a-f]{10}-[0-9a-f]{32}/file.hidden"),
        ("chat:1", "..", r"stylebot/chat_1\.[0-9a-f]{10}-[0-9a-f]{32}/file"),
        ("chat:1", "a.b.c..jpg", r"stylebot/chat_1\.[0-9a-f]{10}-[0-9a-f]{32}/a\.b\.c\.jpg"),
        ("", "", r"stylebot/anon\.[0-9a-f]{10}-[0-9a-f]{32}/file"),
        ("a\x00b", "x%2e%2e.jpg", r"stylebot/a_b\.[0-9a-f]{10}-[0-9a-f]{32}/x_2e_2e\.jpg"),
        ("chat:1", "фото.jpg", r"stylebot/chat_1\.[0-9a-f]{10}-[0-9a-f]{32}/file\.jpg"),
    ],
)
async def test_caller_names_are_sanitized(
    storage: LocalStorage, root: Path, scope: str, name: str, expected: str
) -> None:
    key = await storage.put(b"x", scope=scope, name=name)
    assert re.fullmatch(expected, key), key
    assert (root / key).is_file()


HOSTILE_KEYS = [
    "../outside/secret.txt",
    "stylebot/../../outside/secret.txt",
    f"stylebot/chat-{HEX32}/../../../outside/secret.txt",
    "/etc/passwd",
    "//etc/passwd",
    f"stylebot/chat-{HEX32}/x\x00.jpg",
    f"stylebot/chat-{HEX32}/%2e%2e",
    "stylebot/%2e%2e/%2e%2e/outside/secret.txt",
    "stylebot\\..\\..\\outside\\secret.txt",
    f"stylebot/chat-{HEX32}\\..\\x.jpg",
    f"stylebot/chat-{HEX32}/..",
    f"stylebot/chat-{HEX32}/.x.jpg.tmp",
    f"stylebot/chat-{HEX32}/sub/x.jpg",
    f"other/chat-{HEX32}/x.jpg",
    "stylebot/chat-notrandom/x.jpg",
    "stylebot/_records/../jobs/x.json",
    "stylebot/_records/jobs",
    "stylebot/notebooks/maybe/chat-" + HEX32 + "/nb.ipynb",
    "file:///etc/passwd",
    "http://169.254.169.254/latest/meta-data",
    "",
    "stylebot/",
    "x" * 5000,
]


@pytest.mark.parametrize("key", HOSTILE_KEYS)
async def test_hostile_keys_are_refused_everywhere(
    storage: LocalStorage, root: Path, outside: Path, key: str
) -> None:
    await storage.put(b"legit", scope="chat:1", name="a.jpg")
    before_outside, before_root = _tree(outside), _tree(root)
    with pytest.raises(InvalidKeyError):
        await storage.get(key)
    with pytest.raises(InvalidKeyError):
        await storage.put_at(key, b"overwritten")
    with pytest.raises(InvalidKeyError):
        await storage.exists(key)
    with pytest.raises(InvalidKeyError):
        await storage.delete(key)
    with pytest.raises(InvalidKeyError):
        await storage.presigned_url(key)
    assert _tree(outside) == before_outside
    assert _tree(root) == before_root


@pytest.mark.parametrize("prefix", ["../", "/", "stylebot/../..", "other/", "stylebot/.x", "stylebot\\"])
async def test_hostile_list_prefixes_are_refused(storage: LocalStorage, prefix: str) -> None:
    with pytest.raises(InvalidKeyError):
        await storage.list(prefix)


async def test_symlinked_folder_cannot_lead_out(storage: LocalStorage, root: Path, outside: Path) -> None:
    planted = root / "stylebot" / f"chat-{HEX32}"
    planted.parent.mkdir(parents=True)
    planted.symlink_to(outside, target_is_directory=True)
    key = f"stylebot/chat-{HEX32}/secret.txt"
    with pytest.raises(InvalidKeyError):
        await storage.get(key)
    with pytest.raises(InvalidKeyError):
        await storage.put_at(f"stylebot/chat-{HEX32}/new.txt", b"escaped")
    assert not (outside / "new.txt").exists()
    assert await storage.list("stylebot/") == []


async def test_symlinked_prefix_cannot_lead_out(root: Path, outside: Path) -> None:
    root.mkdir()
    (root / "stylebot").symlink_to(outside, target_is_directory=True)
    storage = LocalStorage(root)
    key = storage.new_key(scope="chat:1", name="x.jpg")
    with pytest.raises(InvalidKeyError):
        await storage.put_at(key, b"escaped")
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]


async def test_symlinked_file_is_not_followed(storage: LocalStorage, root: Path, outside: Path) -> None:
    key = await storage.put(b"mine", scope="chat:1", name="a.jpg")
    (root / key).unlink()
    (root / key).symlink_to(outside / "secret.txt")
    with pytest.raises(InvalidKeyError):
        await storage.get(key)
    assert not await storage.exists(key)
    # Overwriting replaces the link itself; the target outside is untouched.
    await storage.put_at(key, b"new")
    assert (outside / "secret.txt").read_bytes() == b"top secret"
    assert await storage.get(key) == b"new"


async def test_failed_write_leaves_old_bytes_and_no_debris(
    storage: LocalStorage, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = await storage.put(b"old complete bytes", scope="chat:1", name="r.jpg")

    def crash(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError):
        await storage.put_at(key, b"new bytes that never finish")
    monkeypatch.undo()
    assert await storage.get(key) == b"old complete bytes"
    assert [p.name for p in (root / key).parent.iterdir()] == ["r.jpg"]


async def test_readers_never_see_half_a_file(storage: LocalStorage) -> None:
    old, new = b"o" * 3_000_000, b"n" * 3_000_000
    key = await storage.put(old, scope="chat:1", name="big.bin")
    seen: set[int] = set()
    stop = threading.Event()

    def read_loop() -> None:
        while not stop.is_set():
            data = storage._read(key)
            assert data in (old, new), f"torn read of {len(data)} bytes"
            seen.add(data[0])

    reader = asyncio.get_running_loop().run_in_executor(None, read_loop)
    for i in range(20):
        await storage.put_at(key, new if i % 2 == 0 else old)
    stop.set()
    await reader
    assert seen  # the reader did read


async def test_missing_key(storage: LocalStorage) -> None:
    key = storage.new_key(scope="chat:1", name="never.jpg")
    assert not await storage.exists(key)
    with pytest.raises(KeyNotFoundError):
        await storage.get(key)
    await storage.delete(key)  # deleting what is gone is fine


async def test_delete_removes_file_and_empty_folder(storage: LocalStorage, root: Path) -> None:
    key = await storage.put(b"x", scope="chat:1", name="a.jpg")
    await storage.delete(key)
    assert not await storage.exists(key)
    assert not (root / key).parent.exists()


async def test_records_and_listing(storage: LocalStorage) -> None:
    first = storage.record_key("jobs", "a" * 32 + ".json")
    second = storage.record_key("jobs", "b" * 32 + ".json")
    other = storage.record_key("owners", "chat_1.json")
    for key in (first, second, other):
        await storage.put_at(key, b"{}")
    data = await storage.put(b"img", scope="chat:1", name="a.jpg")
    assert first == "stylebot/_records/jobs/" + "a" * 32 + ".json"
    assert await storage.list(storage.record_prefix("jobs")) == [first, second]
    assert sorted(await storage.list("stylebot/")) == sorted([first, second, other, data])
    assert await storage.list(storage.record_prefix("nothing")) == []


@pytest.mark.parametrize(
    ("namespace", "name"),
    [
        ("jobs", "../x"),
        ("../jobs", "x"),
        ("jobs", "a/b"),
        ("jobs", ".."),
        ("", "x"),
        ("jobs", ".hidden"),
        ("jobs", "x\x00"),
    ],
)
def test_record_key_rejects_bad_parts(storage: LocalStorage, namespace: str, name: str) -> None:
    with pytest.raises(InvalidKeyError):
        storage.record_key(namespace, name)


async def test_expire_honours_each_retention(storage: LocalStorage, root: Path) -> None:
    data = await storage.put(b"input", scope="chat:1", name="content.jpg")
    ok_nb = await storage.put_notebook(b"{}", scope="chat:1", name="nst.ipynb", failed=False)
    failed_nb = await storage.put_notebook(b"{}", scope="chat:1", name="nst.ipynb", failed=True)
    record = storage.record_key("jobs", "j.json")
    await storage.put_at(record, b"{}")
    assert ok_nb.startswith("stylebot/notebooks/ok/chat_1.")
    assert failed_nb.startswith("stylebot/notebooks/failed/chat_1.")

    now = time.time()
    assert await storage.expire(now=now + 1 * HOUR) == 0
    assert await storage.expire(now=now + 25 * HOUR) == 2
    assert not await storage.exists(data)
    assert not await storage.exists(ok_nb)
    assert await storage.exists(failed_nb)
    assert await storage.expire(now=now + 15 * 24 * HOUR) == 1
    assert not await storage.exists(failed_nb)
    assert await storage.exists(record)
    assert await storage.list("stylebot/") == [record]
    assert [p.name for p in (root / "stylebot").iterdir()] == ["_records"]


async def test_expire_uses_file_age_and_sweeps_stale_temp_files(storage: LocalStorage, root: Path) -> None:
    fresh = await storage.put(b"fresh", scope="chat:1", name="a.jpg")
    old = await storage.put(b"old", scope="chat:1", name="a.jpg")
    two_days_ago = time.time() - 48 * HOUR
    os.utime(root / old, (two_days_ago, two_days_ago))
    debris = (root / fresh).parent / ".a.jpg.x1y2.tmp"
    debris.write_bytes(b"half")
    os.utime(debris, (two_days_ago, two_days_ago))
    assert await storage.expire() == 1
    assert await storage.exists(fresh)
    assert not await storage.exists(old)
    assert not debris.exists()


def test_make_storage_picks_backend(tmp_path: Path) -> None:
    local = make_storage(Settings(storage_dir=tmp_path / "s", s3_prefix="bot/results"))
    assert isinstance(local, LocalStorage)
    assert local.new_key(scope="chat:1", name="x.jpg").startswith("bot/results/chat_1.")
    from stylebot.storage.s3 import S3Storage

    s3 = make_storage(Settings(s3_bucket="my-bucket", s3_endpoint_url="http://127.0.0.1:1"))
    assert isinstance(s3, S3Storage)
    assert s3.bucket == "my-bucket"


def test_seed_env_names_configure_s3(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("S3_BUCKET_WITH_RESULTS_NAME", "seed-bucket")
    monkeypatch.setenv("S3_RESULTS_PREFIX", "results/")
    monkeypatch.setenv("REGION_NAME", "eu-west-1")
    storage = make_storage(Settings())
    assert storage.bucket == "seed-bucket"  # type: ignore[attr-defined]
    assert storage.region_name == "eu-west-1"  # type: ignore[attr-defined]
    assert storage.new_key(scope="chat:1", name="x.jpg").startswith("results/chat_1.")


@pytest.mark.parametrize("prefix", ["../up", "a/../b", "_records", "notebooks", ".hidden"])
def test_bad_configured_prefix_is_refused(tmp_path: Path, prefix: str) -> None:
    with pytest.raises(InvalidKeyError):
        LocalStorage(tmp_path, prefix=prefix)


def test_data_keys_belong_to_the_scope_they_were_made_for(storage: LocalStorage) -> None:
    mine = storage.new_key(scope="chat:8106", name="photo.jpg")
    theirs = storage.new_key(scope="chat:700", name="photo.jpg")
    assert storage.is_data_key_of(mine, "chat:8106")
    assert not storage.is_data_key_of(theirs, "chat:8106")
    # a scope that is a prefix of another is not the same scope
    assert not storage.is_data_key_of(storage.new_key(scope="chat:81060", name="x.jpg"), "chat:8106")
    # owners whose readable parts agree are still two scopes
    assert not storage.is_data_key_of(storage.new_key(scope="chat_1", name="x.jpg"), "chat:1")
    assert not storage.is_data_key_of(storage.new_key(scope="chat:1", name="x.jpg"), "chat_1")
    # records, notebooks and malformed keys belong to nobody
    assert not storage.is_data_key_of(storage.record_key("jobs", "abc.json"), "chat:8106")
    notebook = storage.layout.notebook_key(scope="chat:8106", name="run.ipynb", failed=False)
    assert not storage.is_data_key_of(notebook, "chat:8106")
    for hostile in ("", "../" + mine, mine + "/..", mine.replace("/", "\\"), "/" + mine, mine + "\x00"):
        assert not storage.is_data_key_of(hostile, "chat:8106")
