"""Client SQL (DuckDB dialect) → a checked, read-only statement ready for one engine.

Every query is parsed with sqlglot and only the regenerated SQL reaches an engine, never the
client's text: what runs is exactly the single statement that was checked (DuckDB would run
every statement of a ``;``-separated string, and a parser disagreement would otherwise let a
write slip through).

What a statement may touch is an allow-list. Relations: the served tables, its own CTEs, and
the generator table functions (:data:`~flightsrv.flightsql.functions.TABLE_FUNCTIONS`).
Functions: those of :mod:`flightsrv.flightsql.functions`. A function sqlglot knows becomes a
typed node that sqlglot itself writes for the engine, so it is judged by what it is (its class:
allowed when the DuckDB name a client writes for it is listed); a function sqlglot does not know
reaches the engine by the name the client wrote, so that name must be listed *for that engine*.
The engine is known only once the tables are (:meth:`CheckedQuery.require_safe_for`); until
then :func:`check` accepts a name listed for any engine.

Checking costs the server time before any engine is involved, so it is bounded: the statement's
size first (``runtime.query.max_statement_size``), then its tokens and bracket depth (a cheap
scan, before sqlglot sees it), then the time spent (``runtime.query.parse_timeout``), checked
between phases (Python cannot interrupt a parse), each phase being linear and short within the
token cap.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache

import pyarrow as pa
import sqlglot
from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import SqlglotError
from sqlglot.optimizer.scope import traverse_scope
from sqlglot.tokens import Token, TokenType

from flightsrv.config import QueryLimits
from flightsrv.flightsql import functions
from flightsrv.flightsql.catalog import TableInfo
from flightsrv.flightsql.lru import Lru
from sync.accelerators import dialect_spec

CLIENT_DIALECT = "duckdb"

# Statements that only read. Anything else (DML, DDL, ATTACH, COPY, PRAGMA, SET, EXPLAIN…)
# is refused, including what sqlglot could not parse and kept as an opaque Command.
_READ_ROOTS: tuple[type[exp.Expr], ...] = (
    exp.Query,  # SELECT, FROM-first SELECT, UNION/INTERSECT/EXCEPT, parenthesised queries
    exp.Values,
    exp.Describe,
    exp.Summarize,
    exp.Pivot,
)
# Nodes refused anywhere in the tree (e.g. a data-modifying CTE).
_WRITE_NODES: tuple[type[exp.Expr], ...] = tuple(
    getattr(exp, name)
    for name in (
        "DML", "DDL", "Insert", "Update", "Delete", "Merge", "Create", "Drop", "Alter",
        "Command", "Copy", "Attach", "Detach", "Set", "Pragma", "Use", "Transaction", "Commit",
        "Rollback", "Install", "TruncateTable", "LoadData", "Grant", "Revoke", "Analyze",
        "Export", "Cache", "Uncache", "Refresh", "Kill", "Show", "Into", "Comment", "Declare",
    )
    if hasattr(exp, name)
)  # fmt: skip
# Typed functions that are syntax rather than calls (CAST, ::, CASE, COLUMNS(*)): allowed.
_SYNTAX: tuple[type[exp.Func], ...] = (exp.Cast, exp.TryCast, exp.Case, exp.Columns)
# Operators sqlglot also models as functions (AND, OR, ^…): written by sqlglot for the engine.
_OPERATORS = (exp.Binary, exp.Connector, exp.Unary)
# Caps that keep parsing linear and short, and within Python's recursion limit (sqlglot
# recurses about 25 frames per nested call or parenthesis).
MAX_TOKENS = 10_000
MAX_DEPTH = 32
_SIZE_KEY = "runtime.query.max_statement_size"
_TIME_KEY = "runtime.query.parse_timeout"
# Lexemes for the scan before parsing: quoted text and comments whole, so brackets inside them
# do not count.
_LEXEME = re.compile(
    r"""'(?:[^']|'')*'|"(?:[^"]|"")*"|\$\$.*?\$\$|--[^\n]*|/\*.*?\*/|\w+|[^\w\s]""", re.S
)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class ReadOnlyViolation(Exception):
    """The statement would write, change the session, or read outside the served tables."""


class SqlSyntaxError(Exception):
    """sqlglot could not parse the statement; the message is the parser's."""


class StatementTooLarge(Exception):
    """The statement is over a limit (size, tokens, nesting), or checking it took too long."""


@dataclass(frozen=True)
class CheckedQuery:
    """One read-only statement, its served tables and its parameter count."""

    tree: exp.Expr  # qualifiers of served tables removed; placeholders numbered $1..$n
    tables: tuple[str, ...]  # served names (``orders``, ``sales.orders``), first-seen order
    param_count: int
    # A parameter may set a result column's type (``SELECT ?``): the engine types it from the
    # value bound, so the result schema can differ from one binding to the next.
    typed_by_values: bool = False
    # Functions sqlglot does not know, which reach the engine by the name written (lower case).
    passed_through: frozenset[str] = frozenset()
    tokens: int = 0  # about as many as the statement has: what keeping it in memory costs
    # SQL generated per dialect, kept: checked queries are cached and generation is not free.
    _generated: dict[tuple[str, str], str] = field(default_factory=dict, compare=False, repr=False)

    def require_safe_for(self, dialect: str) -> None:
        """Check the functions passed through by name are allowed on an engine of ``dialect``.

        Raises:
            ReadOnlyViolation: naming the first function that is not.
        """
        refused = sorted(self.passed_through - functions.allowed_for(dialect))
        if refused:
            raise ReadOnlyViolation(
                f"function {refused[0]}() is not allowed on this table's engine ({dialect})"
            )

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
        marker = dialect_spec(dialect).placeholder

        def number(node: exp.Expr) -> exp.Expr:
            if isinstance(node, exp.Placeholder):
                return exp.Var(this=f"{marker}{node.name}")
            return node

        try:
            return self.tree.transform(number).sql(dialect=dialect)
        except RecursionError:
            raise StatementTooLarge(_TOO_DEEP) from None

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


DEFAULT_LIMITS = QueryLimits()
# Checked statements kept, by text: at most this many, holding at most this many tokens in all
# (a tree costs a few KB a token: a statement at the token cap, some 25 MB).
CHECKED_CACHE_SIZE = 1024
CHECKED_CACHE_TOKENS = 100_000
_CHECKED: Lru[tuple[str, str, str, QueryLimits], CheckedQuery] = Lru(
    CHECKED_CACHE_SIZE, CHECKED_CACHE_TOKENS, lambda checked: checked.tokens
)


def check(
    sql: str, catalog_name: str, schema_name: str, limits: QueryLimits = DEFAULT_LIMITS
) -> CheckedQuery:
    """Parse ``sql`` (DuckDB dialect) and check it is a single read of served tables.

    Results are cached by text (a prepared statement is planned at prepare, bind, GetFlightInfo
    and DoGet); a CheckedQuery is never changed once made, and errors are not cached.

    Raises:
        StatementTooLarge: over ``limits`` (size, tokens, nesting, time to check).
        SqlSyntaxError: not parseable, empty, or parameters written in an unsupported style.
        ReadOnlyViolation: anything but a read query (including multiple statements), a
            function or relation outside the allow-lists.
    """
    key = (sql, catalog_name, schema_name, limits)
    checked = _CHECKED.get(key)
    if checked is None:
        checked = _check(sql, catalog_name, schema_name, limits)
        _CHECKED.put(key, checked)
    return checked


def _check(sql: str, catalog_name: str, schema_name: str, limits: QueryLimits) -> CheckedQuery:
    deadline = _Deadline(limits.parse_timeout.total_seconds())
    size = len(sql.encode())
    if size > limits.max_statement_bytes:
        raise StatementTooLarge(
            f"the statement is {size} bytes, over the limit of {limits.max_statement_bytes} "
            f"bytes ({_SIZE_KEY})"
        )
    tokens = _check_shape(sql)
    try:
        tree = _parse(sql, deadline)
        deadline.check("parsing")
        passed_through = _check_nodes(tree, deadline)
        tables = _served_tables(tree, catalog_name, schema_name)
        deadline.check("checking")
        placeholders = list(tree.find_all(exp.Placeholder))
        in_condition = _in_conditions(tree)
    except RecursionError:
        raise StatementTooLarge(_TOO_DEEP) from None
    return CheckedQuery(
        tree,
        tables,
        max((int(p.name) for p in placeholders), default=0),
        typed_by_values=not all(id(p) in in_condition for p in placeholders),
        passed_through=passed_through,
        tokens=tokens,
    )


_TOO_DEEP = f"the statement is nested too deeply (at most {MAX_DEPTH} levels)"


class _Deadline:
    """``parse_timeout`` from now, checked between the phases of a check."""

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._end = time.monotonic() + seconds

    def check(self, phase: str) -> None:
        if time.monotonic() > self._end:
            raise StatementTooLarge(
                f"{phase} the statement took longer than {self._seconds:g} s ({_TIME_KEY}): "
                "simplify it"
            )


def _check_shape(sql: str) -> int:
    """The statement's tokens, counted by a scan far cheaper than sqlglot's tokenizer (which
    costs ~10 µs a token); refuses more than :data:`MAX_TOKENS` tokens or :data:`MAX_DEPTH`
    nested brackets."""
    tokens = depth = 0
    for match in _LEXEME.finditer(sql):
        lexeme = match.group()
        if lexeme in ("(", "[", "{"):
            depth += 1
            if depth > MAX_DEPTH:
                raise StatementTooLarge(_TOO_DEEP)
        elif lexeme in (")", "]", "}"):
            depth -= 1
        elif lexeme.startswith(("--", "/*")):
            continue
        tokens += 1
        if tokens > MAX_TOKENS:
            raise StatementTooLarge(
                f"the statement has more than {MAX_TOKENS} tokens: split it or simplify it"
            )
    return tokens


def _parse(sql: str, deadline: _Deadline) -> exp.Expr:
    """The one statement of ``sql``, placeholders numbered; refused unless it only reads."""
    dialect = Dialect.get_or_raise(CLIENT_DIALECT)
    try:
        tokens = _number_placeholders(dialect.tokenize(sql))
        deadline.check("tokenizing")
        statements = [s for s in dialect.parser().parse(tokens, sql) if s is not None]
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
    return tree


def _check_nodes(tree: exp.Expr, deadline: _Deadline) -> frozenset[str]:
    """Refuse writes and functions outside the allow-lists; return the names of the functions
    sqlglot does not know (the engine gets them as written)."""
    passed_through: set[str] = set()
    for count, node in enumerate(tree.walk()):
        if count % 2048 == 0:
            deadline.check("checking")
        if isinstance(node, _WRITE_NODES):
            raise ReadOnlyViolation(f"read-only server: {_describe(node)} is not allowed")
        if not isinstance(node, exp.Func) or isinstance(node, _OPERATORS):
            continue
        name = _function_name(node)
        if isinstance(node, (exp.Anonymous, exp.AnonymousAggFunc)):
            if name not in functions.ANY_ENGINE:
                raise ReadOnlyViolation(f"function {name}() is not allowed")
            passed_through.add(name)
        elif not isinstance(node, _SYNTAX) and type(node) not in allowed_classes():
            raise ReadOnlyViolation(f"function {name}() is not allowed")
    return frozenset(passed_through)


@cache
def allowed_classes() -> frozenset[type[exp.Func]]:
    """The typed functions a listed name stands for: the classes the DuckDB parser makes of
    ``name(…)``, and those whose own (sqlglot) names are listed.

    Computed once, by parsing each listed name (about a second): servers call it at start.
    """
    names = functions.ANY_ENGINE
    classes = {
        cls
        for cls in _func_classes()
        if any(n.lower() in names for n in cls.sql_names()) and cls is not exp.Anonymous
    }
    for name in names:
        for arity in range(7):  # a name may stand for different functions by arity
            args = ", ".join(["NULL"] * arity)
            try:
                tree = sqlglot.parse_one(f"SELECT {name}({args})", read=CLIENT_DIALECT)
            except SqlglotError:
                continue
            if isinstance(tree, exp.Select) and isinstance(tree.selects[0], exp.Anonymous):
                break  # unknown to sqlglot: checked by name
            classes.update(type(n) for n in tree.find_all(exp.Func))
    classes.discard(exp.Anonymous)
    return frozenset(classes)


def _func_classes() -> Iterator[type[exp.Func]]:
    """Every concrete function class of sqlglot."""
    pending = exp.Func.__subclasses__()
    while pending:
        cls = pending.pop()
        yield cls
        pending.extend(cls.__subclasses__())


# Clauses that only filter, order or bound rows: a value bound inside them cannot change the
# type of any result column.
_CONDITION_CLAUSES = (exp.Where, exp.Having, exp.Qualify, exp.Order, exp.Limit, exp.Offset)


def _in_conditions(tree: exp.Expr) -> set[int]:
    """``id()`` of the placeholders inside a condition clause or a join's ON.

    Linear in the tree (a walk up from each placeholder would be quadratic in a long chain of
    ``AND x = ?``); clauses nested in clauses are walked again, as deep as brackets go.
    """
    clauses: list[exp.Expr] = list(tree.find_all(*_CONDITION_CLAUSES))
    clauses += [j.args["on"] for j in tree.find_all(exp.Join) if j.args.get("on")]
    return {id(p) for clause in clauses for p in clause.find_all(exp.Placeholder)}


def _number_placeholders(tokens: list[Token]) -> list[Token]:
    """``tokens`` with ``?`` made ``$1``, ``$2``… in textual order, and ``?N`` made ``$N``.

    Positional ``?`` must be numbered before parsing: only the text knows their order.
    """
    numbered: list[Token] = []
    positional = 0
    explicit = False
    skip = False
    for i, token in enumerate(tokens):
        if skip:
            skip = False
            continue
        following = tokens[i + 1] if i + 1 < len(tokens) else None
        adjacent = following is not None and following.start == token.end + 1
        if token.token_type == TokenType.PLACEHOLDER and token.text == "?":
            if following is not None and adjacent and following.token_type == TokenType.NUMBER:
                explicit, skip, number = True, True, following.text
            else:
                positional += 1
                number = str(positional)
            numbered += [
                Token(TokenType.PARAMETER, "$", token.line, token.col, token.start, token.start),
                Token(TokenType.NUMBER, number, token.line, token.col, token.end, token.end),
            ]
            continue
        if token.token_type == TokenType.PARAMETER and following is not None and adjacent:
            if following.token_type != TokenType.NUMBER:  # $1 is fine, $name is not
                raise SqlSyntaxError(
                    f"named parameter ${following.text} is not supported: use ? or $1, $2…"
                )
            explicit = True
        numbered.append(token)
    if positional and explicit:
        raise SqlSyntaxError("mixing ? with numbered parameters ($1, ?1) is not supported")
    return numbered


def _served_tables(tree: exp.Expr, catalog_name: str, schema_name: str) -> tuple[str, ...]:
    """Names of the tables ``tree`` reads, as the catalog knows them: ``orders`` for a table of
    the default schema (bare or qualified), ``sales.orders`` for one qualified with another.

    Qualifiers are removed from the tree: a table of another schema becomes the one quoted
    identifier its engine table has (``"sales.orders" AS orders``, so ``orders.id`` still
    names its columns). Unquoted parts fold to lower case, as PostgreSQL and Spice fold them.
    Whether such a name is served is the catalog's to say: an unknown one never reaches an
    engine. A name is a CTE reference only where sqlglot's scopes say that CTE is visible, so
    a CTE defined in one subquery cannot hide a table (or a file DuckDB would scan) elsewhere.
    """
    cte_refs = _cte_references(tree)
    names: dict[str, str] = {}
    schemas: set[str] = set()
    for table in list(tree.find_all(exp.Table)):
        if isinstance(table.this, exp.Func):
            name = _function_name(table.this)
            if name not in functions.TABLE_FUNCTIONS:
                raise ReadOnlyViolation(
                    f"table function {name}() is not allowed: queries read served tables only"
                )
            continue
        if id(table) in cte_refs:
            continue
        schema, catalog = table.db, table.catalog
        if catalog and catalog.lower() != catalog_name.lower():
            raise ReadOnlyViolation(
                f"relation {catalog}.{schema}.{table.name} is not allowed: queries read served "
                f"tables only, in catalog {catalog_name}"
            )
        served = table.name
        if schema and schema.lower() != schema_name.lower():
            served = f"{_folded(table.args['db'])}.{_folded(table.this)}"
            schemas.add(schema.lower())
            if not table.alias:
                table.set("alias", exp.TableAlias(this=table.this.copy()))
            table.set("this", exp.to_identifier(served, quoted=True))
        table.set("db", None)
        table.set("catalog", None)
        names.setdefault(served.lower(), served)
    schemas.add(schema_name.lower())
    for column in tree.find_all(exp.Column):
        if column.args.get("db") and column.db.lower() in schemas:
            column.set("db", None)
            column.set("catalog", None)
    return tuple(names.values())


def _folded(part: exp.Identifier) -> str:
    """One part of a qualified name as SQL means it: as written when quoted, else lower case."""
    return part.name if part.quoted else part.name.lower()


def _cte_references(tree: exp.Expr) -> set[int]:
    """``id()`` of the Table nodes that name a CTE visible where they appear."""
    tops = [tree] if isinstance(tree, exp.Query) else _outermost_queries(tree)
    defined = {cte.alias.lower() for cte in tree.find_all(exp.CTE)}
    refs: set[int] = set()
    for top in tops:
        try:
            scopes = traverse_scope(top)
        except SqlglotError:
            continue  # every table then counts as a real one: safe, if less helpful
        for scope in scopes:
            for table in scope.tables:
                if (
                    not table.db
                    and table.name.lower() in defined
                    and _names_cte(table.name, scope.cte_sources)
                ):
                    refs.add(id(table))
    return refs


def _names_cte(name: str, ctes: Mapping[str, object]) -> bool:
    """Whether ``name`` (known to be some CTE's) is one of ``ctes``, case-insensitively. The
    exact spelling is looked up first: each scope sees every CTE before it, so lowering them
    all for every table would be quadratic in a long WITH."""
    if name in ctes:
        return True
    lowered = name.lower()
    return any(cte.lower() == lowered for cte in ctes)


def _outermost_queries(tree: exp.Expr) -> list[exp.Query]:
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


def _function_name(node: exp.Expr) -> str:
    if isinstance(node, (exp.Anonymous, exp.AnonymousAggFunc)):
        return str(node.name).lower()
    if isinstance(node, exp.Func):
        return node.sql_name().lower()
    return type(node).__name__.lower()


def _describe(node: exp.Expr) -> str:
    """The statement's leading keyword (DELETE, CREATE, EXPLAIN…), for messages."""
    if isinstance(node, exp.Command):
        return str(node.this).upper()
    words = node.sql(dialect=CLIENT_DIALECT).split(None, 1)
    return words[0].upper() if words else type(node).__name__.upper()
