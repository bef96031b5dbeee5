"""DynamoDB typed values as JSON text, assembled in bulk by Arrow string kernels.

For engines without STRUCT / LIST columns (or a column that must hold values of several
kinds), and for the ``json_object`` column. What is rendered: strings as JSON strings, numbers
as DynamoDB wrote them, booleans, NULL as null, binary as its base64 text, maps as objects
with only the keys present in the item (no null for an absent key), lists and sets as arrays.
Compact (no spaces); object keys in name order.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial

import pyarrow as pa
import pyarrow.compute as pc

from sync.dynamodb.typedvalues import EMPTY_TEXT, NO_TEXT, NULL_TEXT, TAGS_PLAIN, bool_text, relist


def json_text(attr: pa.StructArray, tags: frozenset[str] | None = None) -> pa.Array:
    """Each typed value as JSON text (only values of ``tags`` if given); null where the
    attribute is absent."""
    parts = []
    if not pa.types.is_struct(attr.type):  # the elements of lists that are all empty
        return pa.nulls(len(attr), pa.string())
    for f in attr.type:
        if tags is not None and f.name not in tags:
            continue
        values = pc.struct_field(attr, f.name)
        if values.null_count == len(values):
            continue
        tag = f.name
        if tag == "NULL":
            parts.append(pc.if_else(values, NULL_TEXT, NO_TEXT))
        elif tag == "M":
            parts.append(json_object(values))
        elif tag == "L":
            parts.append(_json_array(values, lambda items: pc.fill_null(json_text(items), "null")))
        elif tag in TAGS_PLAIN:
            plain = TAGS_PLAIN[tag]
            parts.append(_json_array(values, partial(json_scalar, plain)))
        else:
            parts.append(json_scalar(tag, values))
    if not parts:
        return pa.nulls(len(attr), pa.string())
    return parts[0] if len(parts) == 1 else pc.coalesce(*parts)


def json_object(maps: pa.StructArray, names: list[str] | None = None) -> pa.Array:
    """A struct of typed values (a map, or an item) as a JSON object; null where ``maps`` is."""
    pieces = []
    for name in sorted(maps.type.names if names is None else names):  # the same text whatever
        child = json_text(pc.struct_field(maps, name))  # order the body listed the keys in
        if child.null_count == len(child):
            continue  # absent from every item of the batch
        key = json.dumps(name, ensure_ascii=False) + ":"
        # '"key":value,' where present, '' where absent (binary_join_element_wise's own
        # null_handling="skip" drops rows in which every piece is null).
        pieces.append(pc.fill_null(pc.binary_join_element_wise(key, child, ",", ""), EMPTY_TEXT))
    n = len(maps)
    if not pieces:
        body: pa.Array = pa.repeat(pa.scalar("{}"), n)
    else:
        joined = pieces[0] if len(pieces) == 1 else pc.binary_join_element_wise(*pieces, "")
        members = pc.utf8_slice_codeunits(joined, 0, -1)  # the last piece's comma
        body = pc.binary_join_element_wise("{", members, "}", "")
    if maps.null_count:
        body = pc.if_else(pc.is_valid(maps), body, NO_TEXT)
    return body


def _json_array(lists: pa.Array, render: Callable[[pa.Array], pa.Array]) -> pa.Array:
    rendered = relist(lists, render)
    body = pc.binary_join_element_wise("[", pc.binary_join(rendered, ","), "]", "")
    return body


def json_scalar(tag: str, values: pa.Array) -> pa.Array:
    """Plain values of one DynamoDB scalar ``tag`` (S / N / B strings, BOOL booleans) as JSON
    text."""
    if tag == "N":
        return values.cast(pa.string())
    if tag == "BOOL":
        return bool_text(values)
    if tag == "B":
        return pc.binary_join_element_wise('"', values, '"', "")
    return json_string(values)


_ESCAPES = {
    "\\": "\\\\",
    '"': '\\"',
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\b": "\\b",
    "\f": "\\f",
}


def json_string(strings: pa.Array) -> pa.Array:
    """Strings as JSON string literals (quoted, escaped)."""
    strings = strings.cast(pa.string())
    if pc.any(pc.match_substring_regex(strings, r'["\\\x00-\x1f]')).as_py():
        strings = pc.replace_substring(strings, "\\", "\\\\")
        strings = pc.replace_substring(strings, '"', '\\"')
        if pc.any(pc.match_substring_regex(strings, r"[\x00-\x1f]")).as_py():
            for code in range(0x20):
                char = chr(code)
                strings = pc.replace_substring(strings, char, _ESCAPES.get(char, f"\\u{code:04x}"))
    return pc.binary_join_element_wise('"', strings, '"', "")
