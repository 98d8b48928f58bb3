"""Ad-hoc SQL for analysts, read-only and without reach outside the store.

`supplymon sql` and the worker's `/sql` run analysts' queries through here, so a
query does the same in both. Three layers, each of which alone stops a write:

1. ClickHouse parses the query (`formatQuery`, the text passed as a bound
   parameter, so it cannot break out): one statement only, and the canonical text
   it returns (no comments, strings in one quoting style) is what is checked and
   then run, so nothing hides from the checks in syntax they read differently.
2. The checks (`check_statement`): the statement must be a read (SELECT, WITH,
   SHOW, DESCRIBE, EXPLAIN, EXISTS); no `INTO OUTFILE`; table functions only from
   an allow-list of generators (`numbers`, `values`, `view`, ...), never those that
   read files, URLs, other servers or the process (`file`, `url`, `remote`, `s3`,
   `mysql`, chdb's `python`, ...); the scalar `file()` is refused too.
3. ClickHouse's own `readonly = 1` on a connection of its own (a separate chdb
   handle, or per-query settings on a server), with `max_execution_time`: writes,
   DDL, `SET` and a query's `SETTINGS` are refused by ClickHouse itself.

Checked in chdb 4.4 (ClickHouse 26.9): `readonly = 1` refuses INSERT, DROP,
OPTIMIZE, `SET`, a `SETTINGS` clause and the table functions file, url, remote,
s3, executable, mysql, sqlite, loop, format; it does NOT refuse `INTO OUTFILE`
(the file is written), the scalar `file('/path')` (returns the file) or chdb's
`python()` table function: those only the checks of layer 2 refuse.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

# Statements that read (their canonical form's first keyword).
READ_STATEMENTS = frozenset({"SELECT", "WITH", "SHOW", "DESCRIBE", "EXPLAIN", "EXISTS"})

# Table functions analysts may use: generators and views over what the store holds.
ALLOWED_TABLE_FUNCTIONS = frozenset({
    "numbers", "numbers_mt", "zeros", "zeros_mt", "generate_series", "generateseries", "values",
    "view", "null", "merge", "primes",
})
# Known table functions that reach outside the store: refused even where the server
# does not list them in system.table_functions. Compared in lower case.
KNOWN_OUTSIDE_TABLE_FUNCTIONS = frozenset({
    "file", "filecluster", "filesystem", "url", "urlcluster", "remote", "remotesecure", "cluster",
    "clusterallreplicas", "s3", "s3cluster", "gcs", "oss", "cosn", "azureblobstorage",
    "azureblobstoragecluster", "hdfs", "hdfscluster", "mysql", "postgresql", "mongodb", "redis", "sqlite",
    "jdbc", "odbc", "executable", "python", "input", "deltalake", "iceberg", "hudi", "paimon", "ytsaurus",
    "bigquery", "arrowflight", "arrowstream", "eval", "prometheusquery", "prometheusqueryrange",
})
# Table functions that are also ordinary (harmless) scalar functions analysts use.
SCALAR_NAMESAKES = frozenset({"format"})

# In the canonical text: a string literal ('...' with backslash escapes), a quoted
# identifier, a word, or any other single character.
_TOKEN = re.compile(r"'(?:[^'\\]|\\.)*'|`(?:[^`\\]|\\.)*`|\"(?:[^\"\\]|\\.)*\"|[A-Za-z_][A-Za-z0-9_$]*|\S",
                    re.DOTALL)


class QueryRefused(ValueError):
    """A query the analysts' SQL does not run; the message says why (Chinese, then English)."""


@dataclass(frozen=True)
class Refusal:
    zh: str
    en: str

    def error(self, detail: str = "") -> QueryRefused:
        return QueryRefused(f"查询被拒绝：{self.zh}{detail}\nquery refused: {self.en}{detail}")


NOT_A_READ = Refusal("只允许只读查询（SELECT、WITH、SHOW、DESCRIBE、EXPLAIN、EXISTS）",
                     "only read-only queries are allowed (SELECT, WITH, SHOW, DESCRIBE, EXPLAIN, EXISTS)")
OUTFILE = Refusal("不允许 INTO OUTFILE（不能写文件）", "INTO OUTFILE is not allowed (no writing files)")
OUTSIDE = Refusal("不允许读取存储以外的数据（文件、网址、其他服务器、进程）的函数",
                  "functions that read outside the store (files, URLs, other servers, the process) are not allowed")
UNPARSED = Refusal("ClickHouse 无法解析此查询（一次只能一条语句）",
                   "ClickHouse cannot parse this query (one statement at a time)")
EMPTY = Refusal("查询为空", "the query is empty")
READONLY = Refusal("ClickHouse 在只读模式下拒绝了此查询（不能写入、建表或更改设置）",
                   "ClickHouse refused it in read-only mode (no writes, no DDL, no changing settings)")


def _unquote(token: str) -> str:
    return token[1:-1] if token[:1] in "`\"" else token


def check_statement(canonical: str, outside_table_functions: frozenset[str] = frozenset()) -> None:
    """Raise QueryRefused unless `canonical` (ClickHouse's formatQuery of one
    statement) only reads the store. `outside_table_functions`: the lower-cased
    names of the server's table functions not in ALLOWED_TABLE_FUNCTIONS."""
    tokens = _TOKEN.findall(canonical)
    if not tokens:
        raise EMPTY.error()
    if tokens[0].upper() not in READ_STATEMENTS:
        raise NOT_A_READ.error(f": {tokens[0][:40]}")
    refused = (KNOWN_OUTSIDE_TABLE_FUNCTIONS | outside_table_functions) - SCALAR_NAMESAKES
    for n, token in enumerate(tokens):
        if token[:1] == "'":
            continue
        name = _unquote(token).lower()
        following = tokens[n + 1] if n + 1 < len(tokens) else ""
        if name == "outfile" and n and tokens[n - 1].upper() == "INTO":
            raise OUTFILE.error()
        if following == "(" and name in refused:
            raise OUTSIDE.error(f": {_unquote(token)}()")


def outside_table_functions(names: list[str]) -> frozenset[str]:
    """The server's table functions (system.table_functions) that analysts may not use."""
    return frozenset(name.lower() for name in names) - ALLOWED_TABLE_FUNCTIONS


class AnalystSql:
    """Runs analysts' queries on a read-only connection of its own to the store.

    `open_client()` gives a fresh clickhouse-connect client (for the embedded store,
    a second chdb handle on the engine the process already holds: its `SET`s are
    its own). Call from the store's thread, like every store call."""

    def __init__(self, client, embedded: bool, timeout_seconds: float):
        self.client = client
        self.embedded = embedded
        limits = {"max_execution_time": int(max(1, timeout_seconds))}
        if embedded:
            # Per-query settings on chdb are SET and restored around the query; a
            # restore after readonly=1 would fail: set them once on this handle.
            for name, value in limits.items():
                client.command(f"SET {name} = {value}")
            client.command("SET readonly = 1")
            self._settings: dict = {}
        else:
            self._settings = {**limits, "readonly": 1}
        names = [row[0] for row in client.query("SELECT name FROM system.table_functions",
                                                settings=self._settings or None).result_rows]
        self._outside = outside_table_functions(names)

    def canonical(self, sql: str) -> str:
        if not sql.strip():
            raise EMPTY.error()
        try:
            text = self.client.raw_query("SELECT formatQuery({q:String})", parameters={"q": sql},
                                         fmt="TabSeparatedRaw", settings=self._settings or None)
        except Exception as exc:  # the parser's message says where
            raise UNPARSED.error(f"\n{_clickhouse_message(exc)}") from None
        return text.decode().strip()

    def query(self, sql: str, fmt: str) -> bytes:
        canonical = self.canonical(sql)
        check_statement(canonical, self._outside)
        try:
            return self.client.raw_query(canonical, fmt=fmt, settings=self._settings or None)
        except Exception as exc:
            if "(READONLY)" in str(exc):
                raise READONLY.error(f"\n{_clickhouse_message(exc)}") from None
            raise

    def close(self) -> None:
        try:
            self.client.close()
        except Exception:  # a broken connection is not worth failing for
            pass


def _clickhouse_message(exc: Exception) -> str:
    """The ClickHouse error line, without the driver's traceback text."""
    text = str(exc)
    match = re.search(r"(Code: \d+\. DB::Exception: .*?)(?:\(version [^)]*\))?(?:\. \(|$)", text, re.DOTALL)
    return (match.group(1) if match else text).strip()[:2000]
