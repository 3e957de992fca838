"""Bundled sample images (CC0 / public domain, see samples/SOURCES.md)."""

from importlib.resources import files
from pathlib import Path

SAMPLES = Path(str(files("stylebot.assets"))) / "samples"


def sample_path(name: str) -> Path:
    """Path of a bundled sample, e.g. ``sample_path("chelsea.jpg")``."""
    path = SAMPLES / name
    if not path.is_file():
        have = sorted(p.name for p in SAMPLES.glob("*.jpg"))
        raise FileNotFoundError(f"no bundled sample {name!r}; have: {have}")
    return path
