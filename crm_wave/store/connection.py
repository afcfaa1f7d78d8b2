"""Opening the DuckDB file of one sync: locks, sessions and transactions.

DuckDB allows one writing process per file, so every connection is taken under an
exclusive lock file beside the database (`<file>.lock`, fcntl). Connections are held
briefly, or for one whole pass inside `session()`.

A long-lived worker (the fleet, the `crm-wave sync` loop) may keep a file open between its
sessions (`keep_open`): closing a DuckDB file checkpoints it, which rewrites and compresses every
row group the session touched (0.15-0.3 CPU-s after one edit at 250 customers, a fifth of the
edit's cost). A kept connection still holds the file's lock; it is closed (and checkpointed) as
soon as another process or thread waits for the file, after `keep_open`'s seconds without use,
when more files than `max_open` are kept, before the file is copied, and at exit.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import importlib.util
import os
import sys
import threading
import time
import weakref
import atexit
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

__all__ = ["Connection", "TransactionAborted", "commit", "json_typed", "zstd_clause", "create_file", "schema_sql", "close_kept", "keep_open",
           "keeping", "kept", "registered", "ids_predicate", "arrow", "ident", "sql_ident", "sql_str", "FEW", "FEW_IDS",
           "fetch_frame", "forget_columns", "remembered_columns", "scratch"]

# DuckDB tries `import pandas` on every statement with parameters and on `.pl()`. Without pandas
# installed, each failed import searches the whole path again: 0.4-0.5 ms on top of a 0.55 ms
# statement, about 0.1 CPU-s of an incremental pass's ~200 statements. Marking the module absent
# makes the same import fail at once.
if "pandas" not in sys.modules and importlib.util.find_spec("pandas") is None:
    sys.modules["pandas"] = None  # type: ignore[assignment]

_SQL_DIR = Path(__file__).parent
_IDENT_OK = set("abcdefghijklmnopqrstuvwxyz_0123456789")
#: Up to this many rows go one statement each; more go as one frame (DuckDB's
#: `executemany` costs about 5 ms a row, registering a frame about as much as one statement).
FEW = 1
#: Up to this many ids go to an id filter as one list parameter (`ids_predicate`); more as a registered frame.
FEW_IDS = 64


@contextlib.contextmanager
def _flock(path: Path, while_waiting: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
           want: Path | None = None) -> Iterator[None]:
    """An exclusive `fcntl` lock on the file `path` (created if missing), between processes;
    `while_waiting()` is entered only while another process holds it, and so is a shared lock on
    `want` (if given): the sign `_waited_for` reads that someone is waiting."""
    with open(path, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            with while_waiting(), _wanting(want):
                fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@contextlib.contextmanager
def _wanting(want: Path | None) -> Iterator[None]:
    if want is None:
        yield
        return
    with open(want, "a+") as sign:
        fcntl.flock(sign, fcntl.LOCK_SH)
        yield


def _waited_for(want: Path) -> bool:
    """Whether a process (or thread) holds a shared lock on `want`: it waits for the file."""
    try:
        with open(want, "a+") as sign:
            return _sign_held(sign)
    except OSError:
        return True  # cannot tell: give the file back, as if someone waited


def _sign_held(sign: Any) -> bool:
    """Whether someone holds a shared lock on the open `want` file `sign` (`_wanting`); True when it cannot tell."""
    try:
        fcntl.flock(sign, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # BlockingIOError: held; any other: cannot tell, give the file back
        return True
    fcntl.flock(sign, fcntl.LOCK_UN)
    return False


class TransactionAborted(RuntimeError):
    """A transaction an error inside it aborted, which its code went on from: nothing of it is kept."""


def commit(con: duckdb.DuckDBPyConnection) -> None:
    """COMMIT the open transaction of `con`; TransactionAborted if an error inside it aborted it.

    DuckDB answers the COMMIT of an aborted transaction by rolling it back without an error: in 1.5.6 after a
    constraint or conversion error the code caught and went on from, in 2.0 after any error, a binder error too
    (crm_wave_tests/engine/test_commit.py). Any statement in an aborted transaction raises, so one trivial
    statement first tells (~0.4 ms): the rollback is then an error, not a silent loss of the writes."""
    try:
        con.execute("SELECT 1")
    except duckdb.TransactionException as e:
        raise TransactionAborted(f"an error inside a transaction aborted it and the code went on: nothing of the "
                                 f"transaction was written (DuckDB: {e})") from e
    con.execute("COMMIT")


@contextlib.contextmanager
def _transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """`con` in a transaction: committed on success (`commit`), rolled back on error."""
    con.execute("BEGIN")
    try:
        yield con
        commit(con)
    except BaseException:
        forget_columns(con)  # what the transaction created or replaced is gone
        with contextlib.suppress(Exception):
            con.execute("ROLLBACK")
        raise


#: Column names of some tables, per open connection (`Tables.table_columns`); None: no such table.
_COLUMNS: weakref.WeakKeyDictionary[duckdb.DuckDBPyConnection, dict[str, list[str] | None]] = weakref.WeakKeyDictionary()


def remembered_columns(con: duckdb.DuckDBPyConnection) -> dict[str, list[str] | None]:
    """The column names remembered for `con`, by table (the caller fills it)."""
    return _COLUMNS.setdefault(con, {})


def forget_columns(con: duckdb.DuckDBPyConnection, *names: str) -> None:
    """Forget the remembered columns of tables `names` (none given: of every table) on `con`."""
    known = _COLUMNS.get(con)
    if known is None:
        return
    if not names:
        known.clear()
    for name in names:
        known.pop(name, None)


@contextlib.contextmanager
def registered(con: duckdb.DuckDBPyConnection, name: str, frame: Any) -> Iterator[str]:
    """`frame` visible to SQL on `con` as the view `name` for the `with` block: a polars frame goes as Arrow
    with plain strings (`arrow`), an Arrow table as it is."""
    con.register(name, arrow(frame) if isinstance(frame, pl.DataFrame) else frame)
    try:
        yield name
    finally:
        con.unregister(name)


@contextlib.contextmanager
def ids_predicate(con: duckdb.DuckDBPyConnection, name: str, ids: pl.Series | list[str],
                  column: str) -> Iterator[tuple[str, list[Any]]]:
    """(SQL predicate "`column` is one of `ids`", its parameters) for a `with` block.

    A few ids (<= `FEW_IDS`) go as one list parameter; more as the frame registered as view `name`.
    For one edit's few ids the list costs about half: registering a frame and joining it took ~2 ms
    and ~2-3 ms more than the statement itself, on each of the ~18 id filters of a global step."""
    values: pl.Series | None = None
    if len(ids) <= FEW_IDS:  # in Python: four polars calls on a few ids cost ~0.5 ms
        raw = ids.to_list() if isinstance(ids, pl.Series) else ids
        listed: list[Any] | None = list(dict.fromkeys(v if isinstance(v, str) else str(v) for v in raw if v is not None))
    else:
        values = (ids if isinstance(ids, pl.Series) else pl.Series(ids, dtype=pl.String)).cast(pl.String).drop_nulls().unique()
        listed = values.to_list() if values.len() <= FEW_IDS else None
    if listed is not None:
        yield f"list_contains(?::VARCHAR[], {column})", [listed]
        return
    assert values is not None  # more than `FEW_IDS` ids
    with registered(con, name, pl.DataFrame({"id": values})):
        yield f"{column} IN (SELECT id FROM {name})", []


#: DuckDB column types a small read builds from Python rows (`fetch_frame`); others go through Arrow.
_POLARS_TYPES: dict[str, Any] = {"VARCHAR": pl.String, "JSON": pl.String, "BOOLEAN": pl.Boolean, "BIGINT": pl.Int64,
                                 "INTEGER": pl.Int32, "DOUBLE": pl.Float64, "DATE": pl.Date,
                                 "TIMESTAMP": pl.Datetime("us")}


def _row_schema(description: Any) -> dict[str, Any] | None:
    return _schema_of(tuple((column[0], str(column[1])) for column in description))


@functools.lru_cache(maxsize=256)
def _schema_of(columns: tuple[tuple[str, str], ...]) -> dict[str, Any] | None:
    schema: dict[str, Any] = {}
    for name, kind in columns:
        dtype = _POLARS_TYPES.get(kind)
        if dtype is None and kind.startswith("DECIMAL(") and kind.endswith(")"):
            precision, scale = kind[8:-1].split(",")
            dtype = pl.Decimal(int(precision), int(scale))
        if dtype is None:
            return None
        schema[name] = dtype
    return schema


def fetch_frame(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None, *,
                small: bool = True) -> pl.DataFrame:
    """The result of the query `sql` as a polars frame, the types `.pl()` gives.

    A result expected `small` (at most `FEW_IDS` rows) is built from Python rows: `.pl()` goes through Arrow,
    which costs about 0.1 ms a column (a 67-column golden row: 9.8 ms against 3.1 ms). A larger result, or a
    column type not in `_POLARS_TYPES`, is read again through Arrow."""
    if small:
        cur = con.execute(sql, params)
        rows = cur.fetchmany(FEW_IDS + 1)
        schema = _row_schema(cur.description) if len(rows) <= FEW_IDS else None
        if schema is not None:
            return pl.DataFrame(rows, schema=schema, orient="row")
    return con.execute(sql, params).pl()


def arrow(frame: pl.DataFrame):
    """A frame as Arrow with plain (not view) strings: DuckDB scans those about twice as fast."""
    return frame.to_arrow(compat_level=pl.CompatLevel.oldest())


def json_typed(table: Any, column: str) -> Any:
    """Arrow `table` with String `column` typed as JSON (Arrow's `arrow.json` extension), which DuckDB takes as
    its JSON type without parsing every value again to check it (a cast from text does: ~1 CPU-s a million
    Wave customers' bodies). Only for text that is JSON by construction. As it is where the installed pyarrow
    lacks the type (before 19)."""
    import pyarrow as pa

    json_type = getattr(pa, "json_", None)
    if json_type is None:
        return table
    i = table.schema.get_field_index(column)
    values = table.column(i)
    typed = json_type(values.type)
    return table.set_column(i, pa.field(column, typed),
                            pa.chunked_array([pa.ExtensionArray.from_storage(typed, c) for c in values.chunks], typed))


def sql_str(text: str) -> str:
    """A SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def sql_ident(text: str) -> str:
    """A quoted SQL identifier."""
    return '"' + text.replace('"', '""') + '"'


def ident(name: str) -> str:
    """Table names come from the fixed dataset names; refuse anything else."""
    if not name or set(name) - _IDENT_OK:
        raise ValueError(f"not a table name: {name!r}")
    return name


#: The storage format a new file is created in: DuckDB's newest, whose string compression (`DICT_FSST`)
#: writes a golden table of a million customers in 7.1 s against 10.1 s, and which can keep the bodies
#: of a dataset with zstd (`BODY_COMPRESSION`). A file keeps the format it was created in: files made
#: before stay as they are, and any connection (none needs a setting) opens both.
STORAGE_VERSION = "latest"
#: Where the file's format allows it, the long strings written in bulk are compressed with zstd (`{zstd}` in
#: `schema.sql` and `datasets.sql`): a dataset's `body` (a million CRM customers' versions written in 2.2 s
#: against 3.1 s, Wave's in 3.0 against 4.6 s, 2.8x smaller; docs/benchmarks.md, "Session 15"), `agreed`'s
#: values and `links`' ids (a rebuild's 900,000 agreed customers and 1.1M links written 0.8 s faster, the
#: file 28 % smaller; "Session 27").
BODY_COMPRESSION = "zstd"
_ZSTD_STRINGS = (1, 2, 0)  # the first storage version that compresses strings with zstd


_scratch_dbs: dict[int, duckdb.DuckDBPyConnection] = {}  # by process id: a forked child makes its own
_scratch_made = threading.Lock()


def scratch() -> duckdb.DuckDBPyConnection:
    """A new cursor of this process's in-memory DuckDB, made at first use (close it: `with scratch() as con`): for
    work on data of no store (Parquet segments, a snapshot file attached, a frame's cells). A `duckdb.connect()` of
    its own is a database of its own and costs ~11 ms; a cursor of one well under a millisecond
    (docs/benchmarks.md, "Session 25")."""
    with _scratch_made:
        db = _scratch_dbs.get(os.getpid())
        if db is None:
            db = _scratch_dbs[os.getpid()] = duckdb.connect()
        return db.cursor()


def _open(path: Path) -> duckdb.DuckDBPyConnection:
    """A new DuckDB connection to the file at `path` (every connection of the store is opened here); a
    missing file is created first (`create_file`)."""
    if not path.exists():
        create_file(path)
    return duckdb.connect(str(path))


def schema_sql(con: duckdb.DuckDBPyConnection, name: str = "schema.sql") -> str:
    """The statements of `name` (`schema.sql`, `datasets.sql`) for `con`'s database: `{zstd}` is `zstd_clause`.
    A table keeps the compression it was created with; files made before keep theirs."""
    return (_SQL_DIR / name).read_text().replace("{zstd}", zstd_clause(con))


def create_file(path: Path) -> None:
    """Create the empty DuckDB file `path` in the `STORAGE_VERSION` format. The connection that creates
    it is closed at once: a file open in a process with one configuration cannot be opened there with
    another, and the format, once in the file, needs no setting."""
    duckdb.connect(str(path), config={"storage_compatibility_version": STORAGE_VERSION}).close()


def zstd_clause(con: duckdb.DuckDBPyConnection) -> str:
    """The clause that gives a new column `BODY_COMPRESSION`, or "" where the file's format cannot (a file
    created in an older format, or in memory: zstd there would store the strings uncompressed)."""
    ((tags,),) = con.execute("SELECT tags FROM duckdb_databases() WHERE database_name = current_database()").fetchall()
    version = str((tags or {}).get("storage_version", "")).lstrip("v").rstrip("+")
    try:
        newer = tuple(int(x) for x in version.split(".")) >= _ZSTD_STRINGS
    except ValueError:
        newer = False
    return f" USING COMPRESSION {BODY_COMPRESSION}" if newer else ""


def _file_key(path: Path) -> tuple[str, int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return str(path.resolve()), st.st_dev, st.st_ino


# ---- connections kept open between sessions -------------------------------------------------

class _Kept:
    """A connection parked at the end of a session, with the file lock it holds."""

    def __init__(self, con: duckdb.DuckDBPyConnection, flock: contextlib.ExitStack, want: Path) -> None:
        self.con, self.flock, self.since = con, flock, time.monotonic()
        self.want = open(want, "a+")  # noqa: SIM115 - kept open: the watcher looks at it ten times a second

    def close(self) -> None:
        """Close the connection (DuckDB checkpoints it) and give the file's lock back."""
        try:
            self.con.close()
        finally:
            self.want.close()
            self.flock.close()


class _Keeper:
    """The process's kept connections, by file, and the thread that gives them back."""

    #: How often the watcher looks for waiters (a waiter waits at most about this long, plus the checkpoint).
    TICK_S = 0.1

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.kept: dict[tuple[str, int, int], _Kept] = {}
        self.keep_s = 0.0
        self.max_open = 128
        self.thread: threading.Thread | None = None

    def holds(self, path: Path) -> bool:
        """Whether the file at `path` is kept (no `stat` while nothing is)."""
        return bool(self.kept) and _file_key(path) in self.kept

    def take(self, path: Path) -> _Kept | None:
        """The kept connection of the file at `path`, now the caller's (None when there is none)."""
        if not self.kept:
            return None
        key = _file_key(path)
        with self.lock:
            return self.kept.pop(key, None) if key is not None else None

    def put(self, key: tuple[str, int, int] | None, kept: _Kept) -> bool:
        """Keep `kept` (False, and nothing kept, when keeping is off)."""
        if key is None or self.keep_s <= 0:
            kept.want.close()
            return False
        with self.lock:
            self.kept[key] = kept
            over = sorted(self.kept.items(), key=lambda item: item[1].since)[:max(0, len(self.kept) - self.max_open)]
            for k, _ in over:
                del self.kept[k]
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._watch, name="crm-wave-kept", daemon=True)
                self.thread.start()
        for _, old in over:
            old.close()
        return True

    def close(self, path: Path | None = None) -> int:
        """Close the kept connection of the file at `path` (of every file when None); how many were closed."""
        if not self.kept:
            return 0
        key = None if path is None else _file_key(path)
        with self.lock:
            keys = [k for k in self.kept if path is None or k == key]
            gone = [self.kept.pop(k) for k in keys]
        for kept in gone:
            kept.close()
        return len(gone)

    def _watch(self) -> None:
        while True:
            time.sleep(self.TICK_S)
            now = time.monotonic()
            with self.lock:
                if not self.kept and self.keep_s <= 0:
                    self.thread = None
                    return
                due = [k for k, v in self.kept.items() if now - v.since >= self.keep_s or _sign_held(v.want)]
                gone = [self.kept.pop(k) for k in due]
            for kept in gone:
                with contextlib.suppress(Exception):  # a failed close leaves the WAL, which the next open replays
                    kept.close()


_KEEPER = _Keeper()
atexit.register(_KEEPER.close)


def keep_open(seconds: float, *, max_open: int = 128) -> None:
    """Keep each DuckDB file open for up to `seconds` after a session ends (0: close at once, the default).

    For a long-lived worker that syncs the same tenants again and again: the next session reuses the
    connection, so the file is neither checkpointed nor opened again in between. At most `max_open` files
    are kept (the oldest closed first; each costs a few MB). Turning it off closes every kept file."""
    _KEEPER.keep_s, _KEEPER.max_open = max(0.0, seconds), max(1, max_open)
    if _KEEPER.keep_s <= 0:
        _KEEPER.close()


@contextlib.contextmanager
def keeping(seconds: float, *, max_open: int = 128) -> Iterator[None]:
    """`keep_open(seconds)` for the `with` block; every kept file is closed (checkpointed) when it ends."""
    keep_open(seconds, max_open=max_open)
    try:
        yield
    finally:
        keep_open(0)


def close_kept() -> int:
    """Close every kept connection now (each is checkpointed); how many there were."""
    return _KEEPER.close()


def kept(path: Path) -> bool:
    """Whether this process keeps the file at `path` open between sessions right now."""
    return _KEEPER.holds(Path(path))


class Connection:
    """The sync's DuckDB file at `path`: locks, sessions and transactions."""

    #: Files whose schema this process has created already (path, device, inode): `schema.sql`
    #: runs once per file and process, not once per `Store`.
    _ready: set[tuple[str, int, int]] = set()

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_path = self.path.with_name(self.path.name + ".lock")
        self._want_path = self.path.with_name(self.path.name + ".want")
        self._thread_lock = threading.RLock()
        self._datasets: set[str] = set()
        self._session: tuple[int, duckdb.DuckDBPyConnection] | None = None
        self._atomic = False  # the session's connection is inside `atomic()`
        self._open_transactions = 0  # `connect()` blocks open on the session's connection
        self._threads: int | None = None  # DuckDB's threads for the session's connection (`threads`)
        self._session_lock = contextlib.ExitStack()
        if _file_key(self.path) not in Connection._ready:
            from crm_wave.store import files  # (files uses this module)

            with self.connect() as con:
                con.execute(schema_sql(con))
                files.follow(con, files.root_of(self.path))  # a store moved with its files: its views point there
            key = _file_key(self.path)
            if key is not None:
                Connection._ready.add(key)

    @contextlib.contextmanager
    def named_lock(self, name: str) -> Iterator[None]:
        """An exclusive lock of its own beside the database, e.g. one push of one share table at a time.

        Never waited for while holding the file: when another process has it, this thread's
        session is given back until it is ours (that process may be waiting for the file, to
        record what it sent). Locks are always taken in the order named lock, then file.
        """
        with _flock(self.path.with_name(f"{self.path.name}.{ident(name)}.lock"), self.released):
            yield

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the database's exclusive lock (no connection open): for copying the file."""
        if self._in_session():
            raise RuntimeError(f"{self.path}: locked() inside this thread's own session would wait for itself")
        _KEEPER.close(self.path)  # the file must be whole (checkpointed) and free
        self._take_thread_lock()
        try:
            with _flock(self._lock_path, want=self._want_path):
                yield
        finally:
            self._thread_lock.release()

    def _take_thread_lock(self) -> None:
        """This process's lock of the file; while another thread holds it, waiting shows on `want`."""
        if not self._thread_lock.acquire(blocking=False):
            with _wanting(self._want_path):
                self._thread_lock.acquire()

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        """Hold the file lock and one open connection for a stretch of database work: the
        `connect()` calls of this thread inside it reuse that connection, each still its own
        transaction.

        Opening the file costs about 15 ms and closing it checkpoints what was written: in a
        small incremental pass, reconnecting for every read and write was half the time. Other
        processes and threads wait for the session to end, as they would for a connection, so
        a session is given back while waiting for an API (`released`; `lent` when someone waits).
        """
        if self._in_session():
            yield
            return
        self._open_session()
        try:
            yield
        finally:
            self._close_session(keep=True)

    @contextlib.contextmanager
    def atomic(self) -> Iterator[None]:
        """Inside a session: one transaction for the `with` block, which the `connect()` calls in it
        join. For a stage that calls no API (global, share): it commits once instead of once per
        step (each commit syncs the WAL to disk), and a failure leaves none of it behind."""
        if not self._in_session() or self._atomic:
            yield
            return
        assert self._session is not None
        self._atomic = True
        try:
            with _transaction(self._session[1]):
                yield
        finally:
            self._atomic = False

    @contextlib.contextmanager
    def threads(self, n: int | None) -> Iterator[None]:
        """Inside a session: DuckDB runs the block's statements on at most `n` threads (None: as it is).

        For passes of a few records. DuckDB's worker threads cost more than they give on small
        statements: one thread makes a one-edit sync ~15 % cheaper in CPU, while a full pass wants
        every core (docs/benchmarks.md, "Session 12").
        """
        if n is None or not self._in_session() or self._threads is not None:
            yield
            return
        self._threads = n
        self._apply_threads()
        try:
            yield
        finally:
            self._threads = None
            if self._session is not None:
                self._session[1].execute("RESET threads")

    def checkpoint(self) -> None:
        """Inside a session, outside its transactions: write everything committed into the file (DuckDB's
        `CHECKPOINT`, the WAL emptied). While the session lasts, no one else writes it: the file on disk is
        whole, to be copied with the connection still open (a snapshot of a kept file then neither closes
        it nor opens it again: 0.16 + 0.07 CPU-s a snapshot in the fleet, docs/deploy.md "Session 13")."""
        with self.bare() as con:
            con.execute("CHECKPOINT")

    @contextlib.contextmanager
    def bare(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """Inside a session, outside its transactions: the session's own connection, for code that runs its
        transactions itself (a segments snapshot's export). A kept file stays open through it."""
        if not self._in_session() or self._atomic or self._open_transactions:
            raise RuntimeError(f"{self.path}: checkpoint() and bare() need this thread's session, outside its transactions")
        assert self._session is not None
        self._open_transactions += 1
        try:
            yield self._session[1]
        finally:
            self._open_transactions -= 1

    def _apply_threads(self) -> None:
        if self._threads is not None and self._session is not None:
            self._session[1].execute(f"SET threads = {int(self._threads)}")

    @contextlib.contextmanager
    def released(self) -> Iterator[None]:
        """Inside a session: give the file back for the `with` block (an API call may take minutes,
        and operators' commands must not wait for it), then take it again."""
        if not self._in_session():
            yield
            return
        if self._atomic:
            raise RuntimeError(f"{self.path}: released() inside atomic() would commit half of it")
        self._close_session()
        try:
            yield
        finally:
            self._open_session()

    @contextlib.contextmanager
    def lent(self) -> Iterator[None]:
        """Inside a session: an API call follows. The file is given back for it (`released`) only
        if another process or thread is waiting for it; otherwise the session is kept, because
        closing the file checkpoints it and opening it again costs 30-50 ms each way, most of a
        one-record push. So a waiter waits at most for one API call in flight. Outside a
        session, or inside `atomic()` or a `connect()` block, it does nothing."""
        if not self._in_session() or self._atomic or self._open_transactions or not _waited_for(self._want_path):
            yield
            return
        with self.released():
            yield

    def _open_session(self) -> None:
        self._take_thread_lock()
        kept = _KEEPER.take(self.path)
        if kept is not None:  # this process kept the file open since its last session: take that over
            kept.want.close()
            self._session_lock, self._session = kept.flock, (threading.get_ident(), kept.con)
            self._apply_threads()
            return
        try:
            self._session_lock = contextlib.ExitStack()
            self._session_lock.enter_context(_flock(self._lock_path, want=self._want_path))
            try:
                self._session = (threading.get_ident(), _open(self.path))
                self._apply_threads()
            except BaseException:
                self._session_lock.close()
                raise
        except BaseException:
            self._thread_lock.release()
            raise

    def _close_session(self, *, keep: bool = False) -> None:
        """End this thread's session: close the connection and give the file back, or, with `keep`
        and `keep_open` on, park both for the next session of this process (`_Keeper`)."""
        assert self._session is not None
        con, self._session = self._session[1], None
        try:
            if keep and _KEEPER.keep_s > 0 and _KEEPER.put(_file_key(self.path), _Kept(con, self._session_lock, self._want_path)):
                return
            try:
                con.close()
            finally:
                self._session_lock.close()
        finally:
            self._thread_lock.release()

    def _in_session(self) -> bool:
        return self._session is not None and self._session[0] == threading.get_ident()

    @contextlib.contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection under the file lock (the session's, inside `session()`), committed on
        success, rolled back on error."""
        if self._session is not None and self._in_session():
            if self._atomic:
                yield self._session[1]
                return
            self._open_transactions += 1
            try:
                with _transaction(self._session[1]) as con:
                    yield con
            finally:
                self._open_transactions -= 1
            return
        if _KEEPER.holds(self.path):  # kept open: reuse it rather than wait for it
            with self.session(), self.connect() as con:
                yield con
            return
        with self.locked():
            con = _open(self.path)
            try:
                with _transaction(con):
                    yield con
            finally:
                con.close()
