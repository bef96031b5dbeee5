"""The functions a client statement may call, by name as written in DuckDB's dialect.

Everything listed computes a value from its arguments (or reads the clock or a random source):
nothing reads files, settings, the environment, the catalog or other databases, or changes a
session. A few take the size of what they produce as an argument (``repeat``, ``lpad``), which
the engine's memory limit bounds. Names are lower case. Whatever is not listed is refused, so a
function an engine adds tomorrow stays out until someone adds it here.

Each engine's list is :data:`COMMON` plus the pure functions only that engine has, which a
client may write by the engine's own name (see :func:`allowed_for`). The names the security
review found dangerous (PostgreSQL ``pg_*``, ``lo_*``, ``set_config``, ``*_to_xml``; SQLite
``fts3_tokenizer``, ``load_extension``, ``zeroblob``; DuckDB ``read_*``, ``getenv``,
``duckdb_*``…) are in none of the lists; the tests check it for each engine.
"""

from __future__ import annotations

from functools import cache

# Aggregates: pure functions of the rows of a group.
_AGGREGATES = frozenset(
    {
        "count", "count_star", "count_if", "countif", "sum", "fsum", "sumkahan", "kahan_sum",
        "avg", "mean", "favg", "min", "max", "min_by", "max_by", "arg_min", "arg_max",
        "argmin", "argmax", "any_value", "first", "last", "arbitrary", "product",
        "bool_and", "bool_or", "every", "bit_and", "bit_or", "bit_xor",
        "string_agg", "group_concat", "listagg", "list", "array_agg", "histogram",
        "approx_count_distinct", "approx_quantile", "approx_top_k", "median", "mode",
        "quantile", "quantile_cont", "quantile_disc", "percentile_cont", "percentile_disc",
        "stddev", "stddev_samp", "stddev_pop", "variance", "var_samp", "var_pop",
        "covar_pop", "covar_samp", "corr", "entropy", "kurtosis", "kurtosis_pop", "skewness",
        "regr_slope", "regr_intercept", "regr_r2", "regr_count", "regr_avgx", "regr_avgy",
        "regr_sxx", "regr_syy", "regr_sxy", "mad",
    }
)  # fmt: skip
# Window functions: pure functions of a row's frame.
_WINDOW = frozenset(
    {
        "row_number", "rank", "dense_rank", "percent_rank", "cume_dist", "ntile",
        "lag", "lead", "first_value", "last_value", "nth_value",
    }
)  # fmt: skip
# Numbers.
_MATH = frozenset(
    {
        "abs", "ceil", "ceiling", "floor", "round", "round_even", "roundbankers", "trunc",
        "sign", "signbit", "sqrt", "cbrt", "exp", "ln", "log", "log2", "log10", "pow", "power",
        "mod", "greatest", "least", "pi", "degrees", "radians", "sin", "cos", "tan", "cot",
        "asin", "acos", "atan", "atan2", "sinh", "cosh", "tanh", "asinh", "acosh", "atanh",
        "isnan", "isinf", "isfinite", "gcd", "lcm", "factorial", "even", "bit_count", "xor",
        "random", "gamma", "lgamma", "nextafter", "divide",
    }
)  # fmt: skip
# Text.
_TEXT = frozenset(
    {
        "lower", "upper", "lcase", "ucase", "length", "len", "char_length", "character_length",
        "octet_length", "bit_length", "strlen", "substr", "substring", "substring_grapheme",
        "left", "right", "left_grapheme", "right_grapheme", "trim", "ltrim", "rtrim", "btrim",
        "replace", "repeat", "reverse", "concat", "concat_ws", "contains", "starts_with",
        "ends_with", "prefix", "suffix", "position", "strpos", "instr", "split_part",
        "string_split",
        "str_split", "split", "string_split_regex", "str_split_regex", "lpad", "rpad",
        "regexp_matches", "regexp_full_match", "regexp_replace", "regexp_extract",
        "regexp_extract_all", "regexp_split_to_array", "regexp_escape", "like_escape",
        "ilike_escape", "format", "printf", "md5", "md5_number", "sha1", "sha256", "hash",
        "ascii", "chr", "unicode", "ord", "translate", "strip_accents", "nfc_normalize",
        "levenshtein", "editdist3", "damerau_levenshtein", "hamming", "mismatches",
        "jaccard", "jaro_similarity", "jaro_winkler_similarity", "to_base64", "from_base64",
        "base64", "hex", "unhex", "to_hex", "from_hex", "bin", "to_binary", "from_binary",
        "encode", "decode", "initcap", "url_encode", "url_decode", "formatreadablesize",
        "format_bytes", "formatreadabledecimalsize", "uuid", "gen_random_uuid",
    }
)  # fmt: skip
# Dates, times and intervals.
_TIME = frozenset(
    {
        "date_trunc", "datetrunc", "date_part", "datepart", "date_diff", "datediff",
        "date_sub", "datesub", "date_add", "extract", "strftime", "strptime", "try_strptime",
        "epoch", "epoch_ms", "epoch_us", "epoch_ns", "make_date", "make_time",
        "make_timestamp", "make_timestamptz", "to_timestamp", "now", "current_timestamp",
        "current_date", "current_time", "current_localtimestamp", "current_localtime",
        "localtimestamp", "localtime", "today", "get_current_timestamp", "get_current_time",
        "transaction_timestamp", "age", "last_day", "dayname", "monthname", "year", "month",
        "day", "hour", "minute", "second", "millisecond", "microsecond", "nanosecond",
        "quarter", "week", "weekofyear", "weekday", "dayofweek", "dayofmonth", "dayofyear",
        "isodow", "isoyear", "yearweek", "era", "century", "decade", "millennium", "julian",
        "time_bucket", "timezone", "timezone_hour", "timezone_minute", "to_days", "to_hours",
        "to_minutes", "to_seconds", "to_milliseconds", "to_microseconds", "to_years",
        "to_months", "to_weeks", "to_centuries", "to_decades", "to_millennia", "to_quarters",
    }
)  # fmt: skip
# Conditions, NULL handling and types.
_CONDITIONAL = frozenset(
    {
        "coalesce", "ifnull", "nullif", "if", "iff", "typeof", "current_schema",
        "current_database", "current_catalog", "error",
    }
)  # fmt: skip
# Lists, structs and maps.
_NESTED = frozenset(
    {
        "list_value", "list_pack", "array_value", "struct_pack", "struct_extract",
        "struct_insert", "row", "list_extract", "list_element", "array_extract",
        "list_contains", "list_has", "array_contains", "array_has", "list_position",
        "list_indexof", "array_position", "array_indexof", "list_concat", "list_cat",
        "array_concat", "array_cat", "list_append", "array_append", "list_prepend",
        "array_prepend", "list_slice", "array_slice", "list_sort", "array_sort",
        "list_reverse_sort", "array_reverse_sort", "list_reverse", "array_reverse",
        "list_distinct", "array_distinct", "list_unique", "array_unique", "array_length",
        "list_aggregate", "array_aggregate", "list_aggr", "list_transform", "array_transform",
        "list_apply", "array_apply", "apply", "list_filter", "array_filter", "filter",
        "list_reduce", "array_reduce", "reduce", "list_sum", "list_min", "list_max",
        "list_avg", "list_count", "list_first", "list_last", "list_string_agg",
        "list_has_any", "array_has_any", "list_has_all", "array_has_all", "list_zip",
        "list_where", "list_select", "flatten", "cardinality", "unnest", "map",
        "map_extract", "map_keys", "map_values", "map_entries", "map_from_entries",
        "element_at", "list_any_value", "list_bool_and", "list_bool_or", "array_to_string",
        "array_to_json", "range", "generate_series", "generate_subscripts",
    }
)  # fmt: skip
# JSON.
_JSON = frozenset(
    {
        "json_extract", "json_extract_string", "json_extract_path", "json_extract_path_text",
        "json_value", "json_type", "json_valid", "json_array_length", "json_keys",
        "json_object", "json_array", "json_quote", "to_json", "json", "json_contains",
        "json_structure", "json_merge_patch", "json_group_array", "json_group_object",
        "json_exists", "json_pretty",
    }
)  # fmt: skip

COMMON: frozenset[str] = frozenset().union(
    _AGGREGATES, _WINDOW, _MATH, _TEXT, _TIME, _CONDITIONAL, _NESTED, _JSON
)

# Pure functions a client may write by the engine's own name (sqlglot passes unknown names
# through unchanged): they run on that engine only.
_POSTGRES_ONLY = frozenset(
    {
        "to_char", "to_date", "to_number", "justify_days", "justify_hours", "justify_interval",
        "make_interval", "date_bin", "string_to_array", "array_to_string", "array_dims",
        "array_lower", "array_upper", "array_ndims", "array_remove", "array_replace",
        "jsonb_extract_path", "jsonb_extract_path_text", "jsonb_array_length", "jsonb_typeof",
        "jsonb_object_keys", "jsonb_build_object", "jsonb_build_array", "json_build_object",
        "json_build_array", "json_typeof", "json_object_keys", "jsonb_agg", "json_agg",
        "jsonb_object_agg", "json_object_agg", "to_jsonb", "quote_ident", "quote_literal",
        "quote_nullable", "regexp_count", "regexp_like", "regexp_substr", "regexp_instr",
        "clock_timestamp", "statement_timestamp", "width_bucket", "scale", "div",
    }
)  # fmt: skip
_SQLITE_ONLY = frozenset(
    {
        "iif", "total", "julianday", "unixepoch", "date", "time", "datetime", "timediff",
        "likelihood", "likely", "unlikely", "quote", "char", "soundex", "json_insert",
        "json_replace", "json_set", "json_remove", "json_patch", "jsonb",
        "json_error_position",
    }
)  # fmt: skip
_ENGINE_ONLY = {"duckdb": frozenset(), "postgres": _POSTGRES_ONLY, "sqlite": _SQLITE_ONLY}


@cache
def allowed_for(dialect: str) -> frozenset[str]:
    """The function names a statement may call on an engine of ``dialect``."""
    return COMMON | _ENGINE_ONLY.get(dialect, frozenset())


ANY_ENGINE: frozenset[str] = COMMON.union(*_ENGINE_ONLY.values())

# Table functions a query may read from: generators only. File, network and catalog readers
# (read_csv, glob, query, duckdb_tables, pragma_*…) would reach past the served tables.
TABLE_FUNCTIONS = frozenset({"range", "generate_series", "unnest", "generate_subscripts"})
