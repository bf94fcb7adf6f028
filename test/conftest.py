"""Shared pytest fixtures: the repository on sys.path and the optional ../shared folder."""

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SAMPT_SHARED", REPO.parent / "shared"))

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def shared_path(*parts: str) -> Path:
    """Path under ../shared, or skip the calling test with the reason when it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs {path} (the shared evaluation data beside the checkout); absent here")
    return path


@pytest.fixture
def shared_dir() -> Path:
    return shared_path()


@pytest.fixture
def davis_root() -> Path:
    return shared_path("data", "davis2016")
