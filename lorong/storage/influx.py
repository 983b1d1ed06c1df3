"""InfluxDB 1.x HTTP API: line protocol over ``/write``, InfluxQL over ``/query``.

The only module that speaks to InfluxDB. Works against InfluxDB 1.6+ and the v1-compatibility
endpoints of InfluxDB 2.x/3.x. Line protocol escaping follows
https://docs.influxdata.com/influxdb/v1/write_protocols/line_protocol_reference/ ; InfluxQL
quoting follows https://docs.influxdata.com/influxdb/v1/query_language/spec/ .
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import msgpack
import orjson

if TYPE_CHECKING:
    import pyarrow as pa

from lorong.core.errors import StoreRejected, StoreUnavailable

_MEAS_ESC = str.maketrans({",": r"\,", " ": r"\ ", "\n": r"\n"})
_KEY_ESC = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\n": r"\n"})


def escape_measurement(name: str) -> str:
    """Escape a measurement name for line protocol (commas and spaces)."""
    return name.translate(_MEAS_ESC)


def escape_key(name: str) -> str:
    """Escape a tag key, tag value or field key for line protocol (commas, equals, spaces)."""
    return name.translate(_KEY_ESC)


def check_tag_value(value: str) -> None:
    """Refuse a tag value line protocol cannot carry.

    In InfluxDB 1.x line protocol a backslash escapes the character after it and nothing escapes a
    backslash: ``k=Depot\\`` before the separating space or comma is refused (HTTP 400 "invalid tag
    format", measured on InfluxDB 1.6.7), and a backslash inside a value comes back altered when it
    precedes a character that is escaped. So tag values hold no backslash.

    Raises:
        ValueError: ``value`` holds a backslash.
    """
    if "\\" in value:
        raise ValueError(f"tag value {value!r} holds a backslash, which InfluxDB line protocol cannot carry")


def _field_value(value: float | int | str | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"non-finite field value {value!r}")
        return repr(value)
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def line(
    measurement: str,
    tags: Mapping[str, str],
    fields: Mapping[str, float | int | str | bool],
    ts_ms: int,
) -> str:
    """Serialise one point as line protocol with millisecond timestamp.

    Tags with empty values are dropped (InfluxDB refuses them); tags are sorted by key as the
    InfluxDB docs recommend for write performance. Python ``float`` fields are written as
    floats (``1.0``), ``int`` as integers (``1i``): Lorong writes readings as floats only.

    Raises:
        ValueError: no fields, a non-finite float, or a tag value with a backslash
            (:func:`check_tag_value`).
    """
    if not fields:
        raise ValueError("a point needs at least one field")
    field_part = ",".join(f"{escape_key(k)}={_field_value(v)}" for k, v in fields.items())
    return f"{series_key(measurement, tags.items())} {field_part} {ts_ms}"


def series_key(measurement: str, tags: Iterable[tuple[str, str]]) -> str:
    """Escaped ``measurement,tag=value,...`` of a point: tags sorted by key (InfluxDB's advice for
    write performance), empty values left out (InfluxDB refuses them).

    Raises:
        ValueError: a tag value with a backslash (:func:`check_tag_value`).
    """
    pairs = sorted(tags)
    for _k, v in pairs:
        check_tag_value(v)
    return escape_measurement(measurement) + "".join(f",{escape_key(k)}={escape_key(v)}" for k, v in pairs if v != "")


_FIELD_KEYS: dict[str, str] = {}
"""Escaped field keys by name (a few dozen metric names exist; bounded)."""


def field_key(name: str) -> str:
    """:func:`escape_key` of a field name, cached (runs for every point)."""
    key = _FIELD_KEYS.get(name)
    if key is None:
        key = escape_key(name)
        if len(_FIELD_KEYS) < 1024:
            _FIELD_KEYS[name] = key
    return key


def float_field(name: str, value: float) -> str:
    """``name=value`` of one float field (``repr``, so ``1.0`` stays a float).

    Raises:
        ValueError: a non-finite value.
    """
    if not math.isfinite(value):
        raise ValueError(f"non-finite field value {name}={value!r}")
    return f"{field_key(name)}={value!r}"


def float_point(series: str, fields: Mapping[str, float], ts_ms: int, more: str = "") -> str:
    """One point of float fields: ``series f1=v1,...[,more] ts_ms``.

    Args:
        series: from :func:`series_key`.
        fields: field name -> value (floats; ints are written as floats).
        ts_ms: epoch milliseconds.
        more: further fields already formatted by :func:`float_field` (joined with a comma).

    Raises:
        ValueError: no fields, or a non-finite value.
    """
    parts = [float_field(k, float(v)) for k, v in fields.items()]
    if more:
        parts.append(more)
    if not parts:
        raise ValueError("a point needs at least one field")
    return f"{series} {','.join(parts)} {ts_ms}"


_IDENT_OK = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def quote_ident(name: str) -> str:
    """Quote an InfluxQL identifier (measurement, tag or field key) with double quotes."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def quote_literal(value: str) -> str:
    """Quote an InfluxQL string literal with single quotes, escaping quotes and backslashes."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


STATEMENTS_PER_REQUEST = 500
"""Statements per request of :meth:`InfluxClient.query_each`: 500 one-device statements are a request of
about 100 kB, far below the 10 MB that Go's ``net/http`` (InfluxDB's server) reads of a form body."""


@dataclass(frozen=True, slots=True)
class Series:
    """One series of an InfluxQL result.

    Attributes:
        name: measurement name.
        tags: GROUP BY tag values.
        columns: column names; the first is ``time`` (epoch ms when queried by this client).
        values: rows, one list per point, aligned with ``columns``.
    """

    name: str
    tags: dict[str, str]
    columns: list[str]
    values: list[list[Any]]

    def records(self) -> list[dict[str, Any]]:
        """Rows as dicts keyed by column name, with the series tags merged in."""
        return [{**self.tags, **dict(zip(self.columns, row, strict=True))} for row in self.values]


class InfluxClient:
    """Synchronous client for the InfluxDB 1.x HTTP API.

    Args:
        url: base URL, e.g. ``http://127.0.0.1:8086``.
        database: database name used for writes and queries.
        username, password: optional InfluxDB 1.x credentials (sent as HTTP Basic auth).
        timeout_s: per-request timeout in seconds.
        token: optional API token, sent on every request as ``Authorization: Token <token>``: the
            scheme the v1-compatibility ``/write`` and ``/query`` of InfluxDB 2.x, Cloud and 3.x
            accept (docs.influxdata.com, "InfluxDB 1.x compatibility API", "Authenticate with the
            Token scheme"). Used instead of ``username``/``password``.

    Raises:
        ValueError: both a token and a username.

    Errors: network failures, timeouts and HTTP 5xx raise :class:`StoreUnavailable` (retry);
    HTTP 4xx raises :class:`StoreRejected` (the request or its data is bad).
    """

    def __init__(
        self,
        url: str,
        database: str,
        username: str | None = None,
        password: str | None = None,
        timeout_s: float = 10.0,
        token: str | None = None,
    ) -> None:
        if token and username:
            raise ValueError("give InfluxDB either a token or a username and password, not both")
        self.url = url.rstrip("/")
        self.database = database
        auth = (username, password or "") if username else None
        headers = {"Authorization": f"Token {token}"} if token else None
        self._http = httpx.Client(base_url=self.url, timeout=timeout_s, auth=auth, headers=headers)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def clone(self) -> InfluxClient:
        """A client of the same server, database, credentials and timeout with a connection pool of its own,
        for a thread that reads beside others: a 20,000-bin analytics run reading on four threads at once
        through one client failed once with ``ReadError: Bad file descriptor`` (not reproduced since: 3,000
        queries on four threads sharing a client gave no error), and a pool of its own takes that question
        away. Close it when done (``with``)."""
        out = object.__new__(InfluxClient)
        out.url, out.database = self.url, self.database
        out._http = httpx.Client(base_url=self.url, timeout=self._http.timeout, auth=self._http.auth,
                                 headers=self._http.headers)
        return out

    def __enter__(self) -> InfluxClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        try:
            resp = self._http.request(method, path, **kw)
        except httpx.TransportError as exc:
            raise StoreUnavailable(f"influx {self.url}{path}: {exc!r}") from exc
        if resp.status_code >= 500:
            raise StoreUnavailable(f"influx {self.url}{path}: HTTP {resp.status_code} {_error_text(resp)[:200]}")
        if resp.status_code >= 400:
            raise StoreRejected(f"influx {self.url}{path}: HTTP {resp.status_code} {_error_text(resp)[:300]}",
                                status=resp.status_code)
        return resp

    def ping(self) -> bool:
        """True when ``/ping`` answers 204; never raises."""
        try:
            return self._http.get("/ping").status_code == 204
        except httpx.HTTPError:
            return False

    def create_database(self, retention: str = "INF") -> None:
        """Create the database (idempotent) with a default retention policy of ``retention``.

        ``retention`` is an InfluxQL duration (``90d``) or ``INF``; it changes ``autogen`` only
        while the database still has it (:mod:`lorong.storage.retention` replaces it with ``raw``).
        """
        self.command(f"CREATE DATABASE {quote_ident(self.database)}")
        if retention != "INF" and any(
                r.get("name") == "autogen"
                for r in self.records(f"SHOW RETENTION POLICIES ON {quote_ident(self.database)}")):
            self.command(
                f"ALTER RETENTION POLICY autogen ON {quote_ident(self.database)} DURATION {retention}"
            )

    def command(self, q: str) -> None:
        """Run a statement that returns no rows (CREATE, DROP, ALTER) with POST /query.

        Raises:
            StoreRejected: the statement failed (its error text is included).
        """
        body = self._request("POST", "/query", data={"q": q, "db": self.database}).json()
        for res in body.get("results", []):
            if "error" in res:
                raise _rejected(res["error"], repr(q))

    def write_lines(self, lines: Sequence[str]) -> None:
        """Write line-protocol points with millisecond timestamps.

        Raises:
            StoreUnavailable: network or 5xx; nothing can be assumed written, retry all.
            StoreRejected: 4xx; InfluxDB 1.x writes the valid points of a partially bad batch and
                reports the bad ones, so split the batch to find them.
        """
        if not lines:
            return
        self._request(
            "POST",
            "/write",
            params={"db": self.database, "precision": "ms"},
            content="\n".join(lines).encode(),
        )

    def query(self, q: str, params: Mapping[str, Any] | None = None, packed: bool = False) -> list[Series]:
        """Run InfluxQL ``q`` and return every series of every statement, times as epoch ms.

        ``params`` are bound parameters (``$name`` in ``q``); prefer them to string building.
        ``packed``: ask for the answer in MessagePack (:data:`MSGPACK`; read as JSON when the server
        sends that), for big answers whose values all become floats: a float field's whole-number
        value then comes as a float (``971.0``), where JSON gives an int (``971``).

        Raises:
            StoreRejected: the query has an error.
            StoreUnavailable: network or 5xx.
        """
        data: dict[str, Any] = {"q": q, "db": self.database, "epoch": "ms"}
        if params:
            data["params"] = json.dumps(dict(params))
        body = _decode(self._request("POST", "/query", data=data, headers={"Accept": MSGPACK} if packed else None))
        return _series_of(body, q)

    def query_csv(self, q: str, floats: Sequence[str]) -> pa.Table | list[Series] | None:
        """Run InfluxQL ``q`` (one statement) asking for CSV (:data:`CSV`) and parse the answer with pyarrow's
        CSV reader (C++, no Python object per value): 260,000 rows of 20,000 series in 0.1 s where
        MessagePack's decoding and the per-row frame took 0.6-1.0 s on the 2-core bench machine, InfluxDB's
        own work the same (bench/analytics_job.py).

        InfluxDB 1.x writes one header (``name,tags,time`` and the selected columns), then a row per point:
        ``tags`` as ``key=value`` pairs with line protocol's escapes (``\\,``, ``\\=``, ``\\ ``), ``time``
        in epoch ms, a float as the shortest text that reads back to the same number (Go's
        ``strconv.FormatFloat(v, 'f', -1, 64)``), an integer as its digits, a missing value as nothing;
        an empty answer has no header. The columns ``floats`` are read as float64, exactly (a whole number
        as the same float MessagePack gives).

        Returns:
            An Arrow table (``name``, ``tags``, ``time`` int64, then the columns of the answer, ``floats``
            as float64, nulls where a point lacks a value; no column at all for an empty answer); the
            statement's series (as :meth:`query`) from a server that answers another format (the
            v1-compatibility API of InfluxDB 2.x/3.x may); None when a column of ``floats`` holds a value
            that is not a number (a string or boolean field: ask :meth:`query`).

        Raises:
            StoreRejected: the query has an error.
            StoreUnavailable: network or 5xx.
        """
        import pyarrow as pa
        import pyarrow.csv as pacsv

        resp = self._request("POST", "/query", data={"q": q, "db": self.database, "epoch": "ms"},
                             headers={"Accept": CSV})
        kind = resp.headers.get("content-type", "")
        if not kind.startswith(("text/csv", CSV)):
            return _series_of(_decode(resp), q)
        if not resp.content.strip():
            return pa.table({})
        types = {"name": pa.string(), "tags": pa.string(), "time": pa.int64(), **{f: pa.float64() for f in floats}}
        try:
            # one thread, the C library's allocator: 20 MB of CSV grew the peak by ~90 MB with pyarrow's default
            # pool (mimalloc keeps what it freed) and threads, by ~55 MB so, in about the same time (0.1 s)
            table = pacsv.read_csv(pa.py_buffer(resp.content), read_options=pacsv.ReadOptions(use_threads=False),
                                   convert_options=pacsv.ConvertOptions(column_types=types, strings_can_be_null=False,
                                                                        quoted_strings_can_be_null=False),
                                   memory_pool=pa.system_memory_pool())
        except pa.ArrowInvalid as exc:
            if resp.content.startswith(b"error"):
                raise StoreRejected(f"influx: {resp.text.strip()[:300]} in {q!r}") from exc
            return None
        if "error" in table.column_names:
            raise _rejected(table["error"][0], repr(q))
        return table

    def query_each(self, statements: Sequence[str], batch: int = STATEMENTS_PER_REQUEST) -> list[list[Series]]:
        """Run many InfluxQL statements, ``batch`` of them per request (``;``-separated: InfluxDB 1.x runs a
        request's statements in order and answers each under its ``statement_id``), and return each
        statement's series, in the statements' order.

        One request per statement cost about 16 ms of HTTP and parsing on the shared 2-core bench
        machine, InfluxDB's own work on a one-series statement a small part of it: 19,000 statements
        of the first run of a day took 313 s (bench/analytics_job.py). Times are epoch ms.

        Raises:
            StoreRejected: a statement has an error (the first one, with its text).
            StoreUnavailable: network or 5xx.
        """
        out: list[list[Series]] = []
        for part in chunks(statements, max(1, batch)):
            got: list[list[Series]] = [[] for _ in part]
            body = _decode(self._request("POST", "/query", data={"q": ";\n".join(part), "db": self.database,
                                                                  "epoch": "ms"}))
            if "error" in body:
                raise _rejected(body["error"], f"{part[0]!r}...")
            for res in body.get("results", []):
                i = int(res.get("statement_id", 0))
                if "error" in res:
                    raise _rejected(res["error"], repr(part[i]))
                got[i] = [Series(s.get("name", ""), s.get("tags") or {}, s["columns"], s.get("values") or [])
                          for s in res.get("series", [])]
            out.extend(got)
        return out

    def query_chunked(self, q: str, params: Mapping[str, Any] | None = None,
                      chunk_size: int = 10_000) -> Iterator[Series]:
        """Run InfluxQL ``q`` with ``chunked=true`` and yield its series as InfluxDB streams them.

        InfluxDB sends one JSON document per chunk of at most ``chunk_size`` points (a series
        longer than that comes as several :class:`Series` of the same name and tags), so memory
        stays bounded by ``chunk_size`` however long the result (InfluxDB 1.x HTTP API,
        https://docs.influxdata.com/influxdb/v1/guides/query_data/#chunking). Times are epoch ms.

        Raises:
            StoreRejected: the query has an error (also one found midway).
            StoreUnavailable: network or 5xx.
        """
        data: dict[str, Any] = {"q": q, "db": self.database, "epoch": "ms", "chunked": "true",
                                "chunk_size": str(chunk_size)}
        if params:
            data["params"] = json.dumps(dict(params))
        try:
            with self._http.stream("POST", "/query", data=data) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    kind = StoreUnavailable if resp.status_code >= 500 else StoreRejected
                    raise kind(f"influx {self.url}/query: HTTP {resp.status_code} {resp.text[:300]}")
                for text in resp.iter_lines():
                    if not text.strip():
                        continue
                    body = orjson.loads(text)
                    if "error" in body:
                        raise _rejected(body["error"], repr(q))
                    for res in body.get("results", []):
                        if "error" in res:
                            raise _rejected(res["error"], repr(q))
                        for s in res.get("series", []):
                            yield Series(s.get("name", ""), s.get("tags") or {}, s["columns"], s.get("values") or [])
        except httpx.TransportError as exc:
            raise StoreUnavailable(f"influx {self.url}/query: {exc!r}") from exc

    def records(self, q: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Shortcut: :meth:`query` flattened into dict rows (tags merged in)."""
        return [r for s in self.query(q, params) for r in s.records()]


MSGPACK = "application/x-msgpack"
"""The ``Accept`` of :meth:`InfluxClient.query`: InfluxDB 1.x answers ``/query`` in MessagePack
(https://msgpack.org/) with the JSON answer's layout when asked with exactly this value (1.6.7 matches
the header's whole text: a list with JSON as second choice gets JSON). Encoding 260,000 rows of 20,000
series took it about 1 s less than JSON on the 2-core bench machine (bench/analytics_job.py); a server
without it (the v1-compatibility API of InfluxDB 2.x/3.x may not have it) answers JSON, read as JSON."""


CSV = "application/csv"
"""The ``Accept`` of :meth:`InfluxClient.query_csv`: InfluxDB 1.x answers ``/query`` in CSV when asked with it
(``text/csv``; measured on 1.6.7: floats exact, tags line-protocol escaped, an error as an ``error`` column)."""


def _series_of(body: Mapping[str, Any], q: str) -> list[Series]:
    """Every series of every statement of a decoded ``/query`` answer.

    Raises:
        StoreRejected: a statement answered an error.
    """
    out: list[Series] = []
    for res in body.get("results", []):
        if "error" in res:
            raise _rejected(res["error"], repr(q))
        out.extend(Series(s.get("name", ""), s.get("tags") or {}, s["columns"], s.get("values") or [])
                   for s in res.get("series", []))
    return out


def _decode(resp: httpx.Response) -> Any:
    """The document of a ``/query`` answer: MessagePack or JSON, by its ``Content-Type``."""
    if resp.headers.get("content-type", "").startswith(MSGPACK):
        return msgpack.unpackb(resp.content)
    return orjson.loads(resp.content)  # ~1.5x json.loads on big answers


NO_DATABASE_HINT = ("; `lorong stack up` (or `lorong demo`) creates it, or set LORONG_INFLUX__DATABASE to one "
                    "that exists")
"""Added to InfluxDB's "database not found": what to run or set."""


def _rejected(error: object, where: str) -> StoreRejected:
    """The error of a query InfluxDB answered with an ``error``: its text, the query, and for a missing
    database what to do (a new user's first ``analytics run-once`` on a fresh name said only
    "database not found: lorong_fresh in 'SHOW FIELD KEYS ...'")."""
    text = str(error)
    return StoreRejected(f"influx: {text} in {where}" + (NO_DATABASE_HINT if "database not found" in text else ""))


def _error_text(resp: httpx.Response) -> str:
    """An error answer's text: its ``error`` when the body is a MessagePack document."""
    if resp.headers.get("content-type", "").startswith(MSGPACK):
        try:
            doc = msgpack.unpackb(resp.content)
        except (ValueError, msgpack.UnpackException):
            return repr(resp.content[:300])
        return str(doc.get("error", doc)) if isinstance(doc, dict) else str(doc)
    return resp.text


def chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    """Split ``items`` into consecutive slices of at most ``size``."""
    for i in range(0, len(items), size):
        yield items[i : i + size]
