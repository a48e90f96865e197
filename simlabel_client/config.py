"""Where the client keeps the server URL and token: a JSON file only its owner can read.

`~/.config/simlabel/config.json` (or under $XDG_CONFIG_HOME, or %APPDATA% on Windows);
SIMLABEL_CONFIG names another file. SIMLABEL_URL and SIMLABEL_TOKEN override what it holds.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path


def config_path() -> Path:
    if os.environ.get("SIMLABEL_CONFIG"):
        return Path(os.environ["SIMLABEL_CONFIG"]).expanduser()
    if os.name == "nt" and os.environ.get("APPDATA"):
        base = Path(os.environ["APPDATA"])
    else:
        base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "simlabel" / "config.json"


@dataclass
class Settings:
    url: str | None
    token: str | None
    username: str | None = None
    expires: str | None = None


def load_saved() -> dict:
    path = config_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise SystemExit(f"simlabel: cannot read {path}: {exc}") from None
    return data if isinstance(data, dict) else {}


def load(url: str | None = None, token: str | None = None) -> Settings:
    """Command-line values first, then the environment, then the config file."""
    saved = load_saved()
    return Settings(
        url=url or os.environ.get("SIMLABEL_URL") or saved.get("url"),
        token=token or os.environ.get("SIMLABEL_TOKEN") or saved.get("token"),
        username=saved.get("username"),
        expires=saved.get("expires"),
    )


def save(data: dict) -> Path:
    """Writes the file with mode 0600 (and its folder 0700): it holds a token that acts as the user."""
    path = config_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2)
        fh.write("\n")
    os.chmod(tmp, 0o600)  # O_CREAT's mode does not apply to a file left over from before
    os.replace(tmp, path)
    return path


def forget() -> Path | None:
    path = config_path()
    try:
        path.unlink()
    except FileNotFoundError:
        return None
    return path
