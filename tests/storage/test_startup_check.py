"""Every long-running command checks its storage once at start and exits with one clear line.

Run as an operator would: the real `stylebot` command in a subprocess, against moto with IAM auth
enforced (so a wrong secret is really rejected), a bucket that does not exist, and a port with
nothing listening.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from stylebot_test_support import free_port

from stylebot.telegram import make_token

COMMANDS = {
    "server": ["server", "--backend", "local", "--port", "0"],
    "bot": ["bot"],
    "playground": ["playground", "--port", "0"],
}


def _run(args: list[str], env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    full_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("STYLEBOT_", "AWS_", "S3_"))},
        "STYLEBOT_MODELS_DIR": str(tmp_path / "models"),
        "STYLEBOT_TELEGRAM_API_BASE": f"http://127.0.0.1:{free_port()}",  # never reached
        "API_TOKEN": make_token(),
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "stylebot.cli", *args],
        env=full_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _assert_one_clear_line(proc: subprocess.CompletedProcess[str], *must_name: str) -> str:
    assert proc.returncode == 4, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    for word in must_name:
        assert word in lines[0], (word, lines[0])
    return lines[0]


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_wrong_s3_secret_stops_each_command_with_one_line(auth_s3, command: str, tmp_path: Path) -> None:
    short_secret = "Zq9x"  # shorter than 8 characters: must be redacted all the same
    proc = _run(
        COMMANDS[command],
        {
            "S3_BUCKET_WITH_RESULTS_NAME": auth_s3.bucket,
            "STYLEBOT_S3_ENDPOINT_URL": auth_s3.endpoint,
            "AWS_ACCESS_KEY_ID": auth_s3.key_id,
            "AWS_SECRET_ACCESS_KEY": short_secret,
        },
        tmp_path,
    )
    line = _assert_one_clear_line(
        proc, auth_s3.bucket, auth_s3.endpoint, "AWS_SECRET_ACCESS_KEY", f"stylebot {command}:"
    )
    assert "rejected the credentials" in line
    assert short_secret not in proc.stderr + proc.stdout
    assert auth_s3.key_id not in proc.stderr + proc.stdout


def test_missing_bucket_names_the_bucket_and_the_setting(auth_s3, tmp_path: Path) -> None:
    proc = _run(
        COMMANDS["server"],
        {
            "S3_BUCKET_WITH_RESULTS_NAME": "no-such-bucket-here",
            "STYLEBOT_S3_ENDPOINT_URL": auth_s3.endpoint,
            "AWS_ACCESS_KEY_ID": auth_s3.key_id,
            "AWS_SECRET_ACCESS_KEY": auth_s3.secret,
        },
        tmp_path,
    )
    _assert_one_clear_line(proc, "no-such-bucket-here", auth_s3.endpoint, "S3_BUCKET_WITH_RESULTS_NAME")
    assert auth_s3.secret not in proc.stderr


def test_unreachable_endpoint_names_the_endpoint(tmp_path: Path) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    proc = _run(
        COMMANDS["server"],
        {
            "S3_BUCKET_WITH_RESULTS_NAME": "results",
            "STYLEBOT_S3_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "AKIAUNREACHABLE00001",
            "AWS_SECRET_ACCESS_KEY": "unreachable-secret-1234",
        },
        tmp_path,
    )
    _assert_one_clear_line(proc, "results", endpoint, "unreachable", "STYLEBOT_S3_ENDPOINT_URL")
    assert "unreachable-secret-1234" not in proc.stderr


def test_unwritable_local_storage_folder_names_the_setting(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    proc = _run(COMMANDS["server"], {"STYLEBOT_STORAGE_DIR": str(blocker / "storage")}, tmp_path)
    _assert_one_clear_line(proc, "STYLEBOT_STORAGE_DIR")
