"""Cluster DDL, derived from the single-node DDL (schemas/clickhouse.sql).

On a ClickHouse cluster (shards x replicas, ClickHouse Keeper) every table of the
single-node schema becomes two:

- `<table>_local`, created ON CLUSTER with the Replicated variant of its engine
  (`ReplacingMergeTree(version)` -> `ReplicatedReplacingMergeTree('/clickhouse/
  tables/{shard}/{database}/{table}', '{replica}', version)`): the rows, replicated
  within a shard;
- `<table>`, a `Distributed` table over them, sharded so that an order's rows stay
  on one shard: `cityHash64(order_id)` when the table has an `order_id` (rows
  without one, e.g. a product's alerts, by their sorting key). Rows that
  ReplacingMergeTree collapses share their sorting key, hence their shard, so
  `FINAL` on the Distributed table is exact.

Inserts and queries keep using `<database>.<table>`, so nothing else changes. Views
are created ON CLUSTER over the Distributed tables; materialized views read and
write the local tables of their shard; `ALTER TABLE` applies to both. A statement
of another kind is refused with an error (so a new kind of DDL is noticed by the
tests, not deployed half-converted).
"""
from __future__ import annotations

import re

# The engines that have a Replicated variant (ReplicatedMergeTree & co).
MERGE_TREE = re.compile(r"\bENGINE\s*=\s*(?P<engine>(?:Replacing|Summing|Aggregating|Collapsing|"
                        r"VersionedCollapsing|Graphite)?MergeTree)\b(?:\s*\((?P<args>[^)]*)\))?")
CREATE_TABLE = re.compile(r"^CREATE TABLE (?P<ine>IF NOT EXISTS )?(?P<db>\w+)\.(?P<name>\w+)\s*\(", re.S)
CREATE_DATABASE = re.compile(r"^CREATE DATABASE (?P<ine>IF NOT EXISTS )?(?P<db>\w+)\s*$")
CREATE_VIEW = re.compile(r"^CREATE (?P<replace>OR REPLACE )?VIEW (?P<ine>IF NOT EXISTS )?(?P<db>\w+)\.(?P<name>\w+)"
                         r"(?P<rest>\s.*)$", re.S)
CREATE_MV = re.compile(r"^CREATE MATERIALIZED VIEW (?P<ine>IF NOT EXISTS )?(?P<db>\w+)\.(?P<name>\w+)\s+"
                       r"TO (?P<tdb>\w+)\.(?P<target>\w+)(?P<rest>\s.*)$", re.S)
ALTER_TABLE = re.compile(r"^ALTER TABLE (?P<db>\w+)\.(?P<name>\w+)(?P<rest>\s.*)$", re.S)
ORDER_BY = re.compile(r"\bORDER BY\s+(?P<key>\([^)]*\)|[\w.]+)")
REPLICA_PATH = "/clickhouse/tables/{shard}/{database}/{table}"
LOCAL_SUFFIX = "_local"


class ClusterDDLError(ValueError):
    """A single-node statement this module does not know how to put on a cluster."""


def cluster_statements(statements: list[str], database: str, cluster: str) -> list[str]:
    """The cluster form of the single-node `statements` (in order)."""
    on_cluster = f"ON CLUSTER {cluster}"
    replicated: set[str] = set()  # tables given a _local + Distributed pair
    out: list[str] = []
    for statement in statements:
        statement = statement.strip()
        if m := CREATE_DATABASE.match(statement):
            out.append(f"CREATE DATABASE {m['ine'] or ''}{m['db']} {on_cluster}")
        elif m := CREATE_TABLE.match(statement):
            out.extend(_table(statement, m, cluster, replicated))
        elif m := CREATE_MV.match(statement):
            rest = _to_local(m["rest"], m["db"], replicated)
            target = m["target"] + (LOCAL_SUFFIX if m["target"] in replicated else "")
            out.append(f"CREATE MATERIALIZED VIEW {m['ine'] or ''}{m['db']}.{m['name']} {on_cluster} "
                       f"TO {m['tdb']}.{target}{rest}")
        elif m := CREATE_VIEW.match(statement):
            out.append(f"CREATE {m['replace'] or ''}VIEW {m['ine'] or ''}{m['db']}.{m['name']} {on_cluster}{m['rest']}")
        elif m := ALTER_TABLE.match(statement):
            if m["name"] in replicated:
                out.append(f"ALTER TABLE {m['db']}.{m['name']}{LOCAL_SUFFIX} {on_cluster}{m['rest']}")
            out.append(f"ALTER TABLE {m['db']}.{m['name']} {on_cluster}{m['rest']}")
        else:
            raise ClusterDDLError(f"no cluster form known for this statement:\n{statement[:200]}")
    return out


def _table(statement: str, m: re.Match, cluster: str, replicated: set[str]) -> list[str]:
    db, name = m["db"], m["name"]
    head = f"CREATE TABLE {m['ine'] or ''}{db}.{name}"
    engine = MERGE_TREE.search(statement)
    if engine is None:  # no replicated variant (Memory, Log, ...): a copy per node
        return [statement.replace(head, f"{head} ON CLUSTER {cluster}", 1)]
    args = ", ".join(filter(None, (f"'{REPLICA_PATH}'", "'{replica}'", (engine["args"] or "").strip())))
    local = (statement[:engine.start()] + f"ENGINE = Replicated{engine['engine']}({args})"
             + statement[engine.end():])
    local = local.replace(head, f"CREATE TABLE {m['ine'] or ''}{db}.{name}{LOCAL_SUFFIX} ON CLUSTER {cluster}", 1)
    replicated.add(name)
    distributed = (f"CREATE TABLE {m['ine'] or ''}{db}.{name} ON CLUSTER {cluster} AS {db}.{name}{LOCAL_SUFFIX}\n"
                   f"ENGINE = Distributed('{cluster}', '{db}', '{name}{LOCAL_SUFFIX}', {sharding_key(statement)})")
    return [local, distributed]


def sharding_key(statement: str) -> str:
    """An order's rows on one shard: by `order_id` when the table has one, else (and
    for rows whose `order_id` is empty) by the sorting key, so that rows that
    collapse together always meet on one shard."""
    order_by = ORDER_BY.search(statement)
    if order_by is None:
        raise ClusterDDLError(f"a MergeTree table without ORDER BY:\n{statement[:200]}")
    key = order_by["key"].strip()
    by_sorting_key = f"cityHash64({key[1:-1] if key.startswith('(') else key})"
    columns = statement[:MERGE_TREE.search(statement).start()]
    if re.search(r"^\s*order_id\s", columns, re.M):
        if key == "order_id":
            return "cityHash64(order_id)"
        return f"if(empty(order_id), {by_sorting_key}, cityHash64(order_id))"
    return by_sorting_key


def _to_local(sql: str, database: str, replicated: set[str]) -> str:
    """A materialized view's SELECT reading its shard's local tables."""
    for name in replicated:
        sql = re.sub(rf"\b{database}\.{name}\b", f"{database}.{name}{LOCAL_SUFFIX}", sql)
    return sql
