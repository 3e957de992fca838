"""`stylebot run` / `playground` when the web chat port is taken: one clear line, or a free port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest


def _env(models_dir: Path, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STYLEBOT_") and k != "API_TOKEN"}
    env.update(STYLEBOT_MODELS_DIR=str(models_dir), STYLEBOT_STORAGE_DIR=str(tmp_path / "storage"))
    return env


def test_a_taken_explicit_port_gives_one_line_naming_the_option(
    synthetic_models_dir: Path, tmp_path: Path
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "stylebot.cli", "playground", "--port", str(port)],
            env=_env(synthetic_models_dir, tmp_path),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "stylebot playground" in line]
    assert len(lines) == 1 and f"127.0.0.1:{port} is already in use" in lines[0] and "--port" in lines[0]


def test_run_moves_to_a_free_port_when_the_default_is_taken(
    synthetic_models_dir: Path, tmp_path: Path
) -> None:
    try:
        blocker = socket.create_server(("127.0.0.1", 8081))
    except OSError:
        blocker = None  # something else holds 8081 already: the same situation for the command
    proc = subprocess.Popen(
        [sys.executable, "-m", "stylebot.cli", "run"],
        env=_env(synthetic_models_dir, tmp_path),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        ready = ""
        assert proc.stdout is not None
        while time.monotonic() < deadline and not ready:
            line = proc.stdout.readline()
            if not line:
                break
            if "Playground ready" in line:
                ready = line
        assert ready, "the playground did not start"
        url = ready.split("open ", 1)[1].split()[0]
        port = int(url.rsplit(":", 1)[1].strip("/"))
        assert port != 8081
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass  # the printed URL is really served
    finally:
        proc.terminate()
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        if blocker is not None:
            blocker.close()
    assert "Port 8081 is taken; using a free port instead" in err
    assert proc.returncode == 0, err


@pytest.mark.parametrize("argv", [["run", "--help"], ["playground", "--help"]])
def test_help_names_the_port_option(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    from stylebot.cli import main

    with pytest.raises(SystemExit):
        main(argv)
    assert "--port" in capsys.readouterr().out
