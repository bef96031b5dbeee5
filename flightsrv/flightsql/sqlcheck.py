"""Client SQL (DuckDB dialect) → a checked, read-only statement ready for one engine.

Every query is parsed with sqlglot and only the regenerated SQL reaches an engine, never the
client's text: what runs is exactly the single statement that was checked (DuckDB would run
every statement of a ``;``-separated string, and a parser disagreement would otherwise let a
write slip through).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

import pyarrow as pa
import sqlglot
from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import SqlglotError
from sqlglot.optimizer.scope import traverse_scope
from sqlglot.tokens import TokenType

from flightsrv.catalog import TableInfo, TableNotFound

CLIENT_DIALECT = "duckdb"

# Statements that only read. Anything else (DML, DDL, ATTACH, COPY, PRAGMA, SET, EXPLAIN…)
# is refused, including what sqlglot could not parse and kept as an opaque Command.
_READ_ROOTS: tuple[type[exp.Expression], ...] = (
    exp.Query,  # SELECT, FROM-first SELECT, UNION/INTERSECT/EXCEPT, parenthesised queries
    exp.Values,
    exp.Describe,
    exp.Summarize,
    exp.Pivot,
)
# Nodes refused anywhere in the tree (e.g. a data-modifying CTE).
_WRITE_NODES: tuple[type[exp.Expression], ...] = tuple(
    getattr(exp, name)
    for name in (
        "DML", "DDL", "Insert", "Update", "Delete", "Merge", "Create", "Drop", "Alter",
        "Command", "Copy", "Attach", "Detach", "Set", "Pragma", "Use", "Transaction", "Commit",
        "Rollback", "Install", "TruncateTable", "LoadData", "Grant", "Revoke", "Analyze",
        "Export", "Cache", "Uncache", "Refresh", "Kill", "Show", "Into", "Comment", "Declare",
    )
    if hasattr(exp, name)
)  # fmt: skip
# Table functions a query may read from: generators only. File, network and catalog readers
# (read_csv, read_parquet, glob, query, duckdb_tables, pragma_*…) would reach past the mirrors.
_TABLE_FUNCTIONS = frozenset({"range", "generate_series", "unnest", "generate_subscripts"})
# Scalar functions that leak server state or change it.
_DENIED_FUNCTIONS = frozenset(
    {
        "getenv", "current_setting", "nextval", "currval", "setseed", "which_secret",
        "read_text", "read_blob", "read_csv", "read_csv_auto", "read_parquet", "parquet_scan",
        "read_json", "read_json_auto", "read_json_objects", "read_ndjson", "read_ndjson_auto",
        "read_ndjson_objects", "glob", "query", "query_table", "sniff_csv",
        "json_execute_serialized_sql", "checkpoint", "force_checkpoint",
    }
)  # fmt: skip
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class ReadOnlyViolation(Exception):
    """The statement would write, change the session, or read outside the served tables."""


class SqlSyntaxError(Exception):
    """sqlglot could not parse the statement; the message is the parser's."""


@dataclass(frozen=True)
class CheckedQuery:
    """One read-only statement, its served tables and its parameter count."""

    tree: exp.Expression  # qualifiers of served tables removed; placeholders numbered $1..$n
    tables: tuple[str, ...]  # served table names as written (unqualified), first-seen order
    param_count: int
    # A parameter may set a result column's type (``SELECT ?``): the engine types it from the
    # value bound, so the result schema can differ from one binding to the next.
    typed_by_values: bool = False
    # SQL generated per dialect, kept: checked queries are cached and generation is not free.
    _generated: dict[tuple[str, str], str] = field(default_factory=dict, compare=False, repr=False)

    def sql(self, dialect: str) -> str:
        """The statement in ``dialect``, parameters as numbered placeholders (``$1``/``?1``).

        Numbered placeholders bind by position in both DuckDB and SQLite, so the client's
        parameter order holds whatever order the generated clauses come out in.
        """
        key = ("sql", dialect)
        if key not in self._generated:
            self._generated[key] = self._render(dialect)
        return self._generated[key]

    def _render(self, dialect: str) -> str:
        marker = "?{}" if dialect == "sqlite" else "${}"

        def number(node: exp.Expression) -> exp.Expression:
            if isinstance(node, exp.Placeholder):
                return exp.Var(this=marker.format(node.name))
            return node

        return self.tree.transform(number).sql(dialect=dialect)

    def schema_probe_sql(self, dialect: str) -> str:
        """The statement returning no rows, for learning its result schema cheaply.

        LIMIT 0 is set on the statement itself rather than on a wrapping subquery, which would
        rename duplicate output columns (``a``, ``a_1``).
        """
        key = ("probe", dialect)
        if key not in self._generated:
            self._generated[key] = self._render_probe(dialect)
        return self._generated[key]

    def _render_probe(self, dialect: str) -> str:
        if isinstance(self.tree, exp.Query) and not any(
            self.tree.args.get(clause) and self.tree.args[clause].find(exp.Placeholder)
            for clause in ("limit", "offset")
        ):
            return CheckedQuery(self.tree.limit(0), self.tables, self.param_count).sql(dialect)
        # Parameters in LIMIT/OFFSET must stay bound, so wrap instead.
        return f"SELECT * FROM (\n{self.sql(dialect)}\n) AS _schema LIMIT 0"

    def parameter_schema(self, tables: dict[str, TableInfo]) -> pa.Schema:
        """One field per parameter, in plain Arrow types (clients bind values to them).

        A parameter takes the type of the served column it is compared with, else of the
        literal it is compared with; LIKE patterns are strings, LIMIT and OFFSET integers. One
        whose type cannot be told gets the null type, ADBC's "unknown".
        """
        columns: dict[str, pa.DataType] = {}
        for name in self.tables:
            info = tables.get(name.lower())
            if info is not None:
                for field in info.schema:
                    columns.setdefault(field.name.lower(), field.type)
        types: dict[int, pa.DataType] = {}
        for node in self.tree.find_all(exp.Placeholder):
            column = _compared_column(node)
            if column is not None and column.name.lower() in columns:
                types.setdefault(int(node.name), columns[column.name.lower()])
            elif (context := _context_type(node)) is not None:
                types.setdefault(int(node.name), context)
        return pa.schema(
            [pa.field(f"${i}", types.get(i, pa.null())) for i in range(1, self.param_count + 1)]
        )


CHECKED_CACHE_SIZE = 1024


@lru_cache(maxsize=CHECKED_CACHE_SIZE)
def check(sql: str, catalog_name: str, schema_name: str) -> CheckedQuery:
    """Parse ``sql`` (DuckDB dialect) and check it is a single read of served tables.

    Results are cached by text (a prepared statement is planned at prepare, bind, GetFlightInfo
    and DoGet); a CheckedQuery is never changed once made, and errors are not cached.

    Raises:
        SqlSyntaxError: not parseable, empty, or parameters written in an unsupported style.
        ReadOnlyViolation: anything but a read query (including multiple statements).
        TableNotFound: a table qualified with another catalog or schema than the served one.
    """
    numbered = _number_placeholders(sql)
    try:
        statements = [s for s in sqlglot.parse(numbered, read=CLIENT_DIALECT) if s is not None]
    except SqlglotError as e:
        raise SqlSyntaxError(_ANSI.sub("", str(e))) from None
    if not statements:
        raise SqlSyntaxError("empty query")
    if len(statements) > 1:
        raise ReadOnlyViolation(f"only one statement per query is allowed, got {len(statements)}")
    tree = statements[0]
    if not isinstance(tree, _READ_ROOTS):
        raise ReadOnlyViolation(
            "read-only server: only queries (SELECT, WITH, VALUES, DESCRIBE, SUMMARIZE, PIVOT) "
            f"are allowed, not {_describe(tree)}"
        )
    for node in tree.walk():
        if isinstance(node, _WRITE_NODES):
            raise ReadOnlyViolation(f"read-only server: {_describe(node)} is not allowed")
        if isinstance(node, exp.Func) and _function_name(node) in _DENIED_FUNCTIONS:
            raise ReadOnlyViolation(f"function {_function_name(node)}() is not allowed")
    tables = _served_tables(tree, catalog_name, schema_name)
    placeholders = list(tree.find_all(exp.Placeholder))
    return CheckedQuery(
        tree,
        tables,
        max((int(p.name) for p in placeholders), default=0),
        typed_by_values=not all(_in_condition(p) for p in placeholders),
    )


# Clauses that only filter, order or bound rows: a value bound inside them cannot change the
# type of any result column.
_CONDITION_CLAUSES = (exp.Where, exp.Having, exp.Qualify, exp.Order, exp.Limit, exp.Offset)


def _in_condition(node: exp.Expression) -> bool:
    child, parent = node, node.parent
    while parent is not None:
        if isinstance(parent, _CONDITION_CLAUSES):
            return True
        if isinstance(parent, exp.Join) and child.arg_key == "on":
            return True
        child, parent = parent, parent.parent
    return False


def _number_placeholders(sql: str) -> str:
    """Rewrite ``?`` as ``$1``, ``$2``… in textual order, ``?N`` as ``$N``.

    Positional ``?`` must be numbered before parsing: only the text knows their order.
    """
    dialect = Dialect.get_or_raise(CLIENT_DIALECT)
    try:
        tokens = dialect.tokenize(sql)
    except SqlglotError as e:
        raise SqlSyntaxError(_ANSI.sub("", str(e))) from None
    pieces: list[str] = []
    last = 0
    positional = 0
    explicit = False
    for i, token in enumerate(tokens):
        following = tokens[i + 1] if i + 1 < len(tokens) else None
        adjacent = following is not None and following.start == token.end + 1
        if token.token_type == TokenType.PLACEHOLDER and token.text == "?":
            if adjacent and following.token_type == TokenType.NUMBER:  # ?1
                explicit = True
                pieces += [sql[last : token.start], f"${following.text}"]
                last = following.end + 1
            else:
                positional += 1
                pieces += [sql[last : token.start], f"${positional}"]
                last = token.end + 1
        elif token.token_type == TokenType.PARAMETER and adjacent:
            if following.token_type == TokenType.NUMBER:  # $1
                explicit = True
            else:
                raise SqlSyntaxError(
                    f"named parameter ${following.text} is not supported: use ? or $1, $2…"
                )
    if positional and explicit:
        raise SqlSyntaxError("mixing ? with numbered parameters ($1, ?1) is not supported")
    pieces.append(sql[last:])
    return "".join(pieces)


def _served_tables(tree: exp.Expression, catalog_name: str, schema_name: str) -> tuple[str, ...]:
    """Names of the tables ``tree`` reads; strips ``schema.``/``catalog.schema.`` qualifiers.

    A name is a CTE reference only where sqlglot's scopes say that CTE is visible, so a CTE
    defined in one subquery cannot hide a table (or a file DuckDB would scan) elsewhere.
    """
    cte_refs = _cte_references(tree)
    names: dict[str, str] = {}
    for table in list(tree.find_all(exp.Table)):
        if isinstance(table.this, exp.Func):
            name = _function_name(table.this)
            if name not in _TABLE_FUNCTIONS:
                raise ReadOnlyViolation(
                    f"table function {name}() is not allowed: queries read served tables only"
                )
            continue
        if id(table) in cte_refs:
            continue
        schema, catalog = table.db, table.catalog
        if schema and (
            schema.lower() != schema_name.lower()
            or (catalog and catalog.lower() != catalog_name.lower())
        ):
            raise TableNotFound(
                f"table {'.'.join(p for p in (catalog, schema, table.name) if p)!r} not found: "
                f"served tables live in {catalog_name}.{schema_name}"
            )
        table.set("db", None)
        table.set("catalog", None)
        names.setdefault(table.name.lower(), table.name)
    for column in tree.find_all(exp.Column):
        if column.args.get("db") and column.db.lower() == schema_name.lower():
            column.set("db", None)
            column.set("catalog", None)
    return tuple(names.values())


def _cte_references(tree: exp.Expression) -> set[int]:
    """``id()`` of the Table nodes that name a CTE visible where they appear."""
    tops = [tree] if isinstance(tree, exp.Query) else _outermost_queries(tree)
    refs: set[int] = set()
    for top in tops:
        try:
            scopes = traverse_scope(top)
        except SqlglotError:
            continue  # every table then counts as a real one: safe, if less helpful
        for scope in scopes:
            ctes = {name.lower() for name in scope.cte_sources}
            for table in scope.tables:
                if not table.db and table.name.lower() in ctes:
                    refs.add(id(table))
    return refs


def _outermost_queries(tree: exp.Expression) -> list[exp.Expression]:
    return [
        q
        for q in tree.find_all(exp.Query)
        if not isinstance(q.parent, exp.Query) and q.find_ancestor(exp.Query) is None
    ]


def _compared_column(node: exp.Placeholder) -> exp.Column | None:
    """The column a parameter is compared with (``col = ?``, ``? < col``, ``col IN (?)``…)."""
    parent = node.parent
    if isinstance(parent, exp.Tuple):  # IN (?, ?)
        parent = parent.parent
    if isinstance(parent, (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.NullSafeEQ)):
        other = parent.right if parent.left is node else parent.left
        return other if isinstance(other, exp.Column) else None
    if isinstance(parent, (exp.In, exp.Between)) and isinstance(parent.this, exp.Column):
        return parent.this if parent.this is not node else None
    return None


def _context_type(node: exp.Placeholder) -> pa.DataType | None:
    """The type a parameter's place asks for, when no column tells it."""
    parent = node.parent
    if isinstance(parent, (exp.Limit, exp.Offset)):
        return pa.int64()
    if isinstance(parent, (exp.Like, exp.ILike)):
        return pa.string()
    if isinstance(parent, exp.Tuple):  # IN (?, 'a')
        parent = parent.parent
    if isinstance(parent, (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.In)):
        literals = [n for n in parent.find_all(exp.Literal, exp.Boolean) if n is not node]
        if literals:
            literal = literals[0]
            if isinstance(literal, exp.Boolean):
                return pa.bool_()
            if literal.is_string:
                return pa.string()
            return pa.int64() if literal.is_int else pa.float64()
    return None


def _function_name(node: exp.Expression) -> str:
    if isinstance(node, exp.Anonymous):
        return str(node.name).lower()
    if isinstance(node, exp.Func):
        return node.sql_name().lower()
    return type(node).__name__.lower()


def _describe(node: exp.Expression) -> str:
    """The statement's leading keyword (DELETE, CREATE, EXPLAIN…), for messages."""
    if isinstance(node, exp.Command):
        return str(node.this).upper()
    words = node.sql(dialect=CLIENT_DIALECT).split(None, 1)
    return words[0].upper() if words else type(node).__name__.upper()
