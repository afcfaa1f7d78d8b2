"""The Custom CRM reference server (simulator): REST contract v1 over SQLite.

`create_app(db_path=..., token=...)` returns the ASGI app (wrapped in the shared
`FaultInjector`); `seed(db_path, seed=..., customers=..., products=..., orders=...)`
fills the database with reproducible sample data.
"""

from .app import create_app
from .seed import seed

__all__ = ["create_app", "seed"]
