"""crm-wave: a two-way sync of a company's own CRM with Wave accounting."""

import sys as _sys

# httpx imports its command-line client when `rich` and `click` are installed (Dagster installs both): 60-150 ms
# of every process that imports httpx. No crm-wave process runs httpx's command line, so its module is marked
# absent; httpx then defines a stub `main` (its `httpx` console script runs in a process of its own).
if "httpx" not in _sys.modules:
    _sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
