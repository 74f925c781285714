"""Where the studio keeps things: runs, uploads and local models under one workspace folder."""

from __future__ import annotations

import os
from pathlib import Path


def workspace_root() -> Path:
    """STUDIO_WORKSPACE, or ./workspace next to where the studio was started."""
    root = Path(os.environ.get("STUDIO_WORKSPACE", "workspace")).resolve()
    root.mkdir(parents=True, exist_ok=True)
    return root


def runs_root() -> Path:
    return workspace_root() / "runs"


def project_root() -> Path:
    """The folder holding assets/ (the repository, or the installed package's parent)."""
    return Path(__file__).resolve().parents[1]


def resolve_data_path(path: str) -> Path:
    """Data paths in configs are relative to the current folder, falling back to the project's."""
    p = Path(path).expanduser()
    if p.is_absolute() or p.exists():
        return p
    candidate = project_root() / p
    return candidate if candidate.exists() else p
