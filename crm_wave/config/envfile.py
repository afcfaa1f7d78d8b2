"""The `.env` file `crm-wave dev` writes in the data directory, so operator commands beside it
reach the running simulators without exporting anything.

Format: `KEY=value` lines (values shell-quoted), `#` comments. Variables already set in the
environment win over the file. The file exists only while `crm-wave dev` runs.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping, MutableMapping
from pathlib import Path

__all__ = ["ENV_FILE", "apply_env_file", "read_env_file", "write_env_file"]

ENV_FILE = ".env"


def write_env_file(path: Path, values: Mapping[str, str]) -> None:
    """Write `values` to `path` (readable by the owner only), atomically."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("# Written by `crm-wave dev` while it runs; removed when it stops.\n"
                   + "".join(f"{k}={shlex.quote(v)}\n" for k, v in values.items()))
    os.chmod(tmp, 0o600)
    tmp.replace(path)


def read_env_file(path: Path) -> dict[str, str]:
    """The variables of an env file; a line that is not `KEY=value` raises ValueError naming it."""
    out: dict[str, str] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, sep, rest = line.partition("=")
        words = shlex.split(rest) if sep else []
        if not sep or not key.strip().isidentifier() or len(words) > 1:
            raise ValueError(f"{path}:{n}: expected KEY=value, got {line!r}")
        out[key.strip()] = words[0] if words else ""
    return out


def apply_env_file(environ: MutableMapping[str, str], data_root: Path) -> list[str]:
    """Set the variables of `<data_root>/.env` that `environ` lacks; return their names."""
    path = data_root / ENV_FILE
    if not path.is_file():
        return []
    added = [k for k, v in read_env_file(path).items() if not environ.get(k)]
    values = read_env_file(path)
    for k in added:
        environ[k] = values[k]
    return added
