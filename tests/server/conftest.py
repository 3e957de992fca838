"""Fixtures for the ML server tests: real LocalStorage and isolated settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from stylebot.config import Settings
from stylebot.storage.local import LocalStorage


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "storage")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(storage_dir=tmp_path / "storage", models_dir=tmp_path / "models", workers=1)
