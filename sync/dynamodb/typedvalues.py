"""DynamoDB typed attribute values as Arrow arrays, and the bulk operations on them that
inference, conversion and JSON text share.

Every attribute arrives as ``struct<S, N, BOOL, B, NULL, M, L, SS, NS, BS>`` (only the tags
that occur, see ``rawparse``), maps as ``struct<key: typed value, …>`` and lists as
``list<typed value>``; S, N and B values are strings (N as DynamoDB wrote the number, B as
its base64 text), sets lists of such strings.
"""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa
import pyarrow.compute as pc

from sync.errors import PermanentError

SCALAR_TAGS = frozenset(("S", "N", "B", "BOOL"))
NESTED_TAGS = frozenset(("M", "L", "SS", "NS", "BS"))
TAGS_PLAIN = {"SS": "S", "NS": "N", "BS": "B"}  # sets: plain strings of one implied tag
# Scalars made once (making the first one also loads what pyarrow loads lazily for it).
TRUE_TEXT, FALSE_TEXT, NULL_TEXT, EMPTY_TEXT = (
    pa.scalar(t, pa.string()) for t in ("true", "false", "null", "")
)
NO_TEXT = pa.scalar(None, pa.string())


def present_tags(attr: pa.StructArray) -> dict[str, pa.Array]:
    """Tag → its values (parent nulls applied), for tags holding at least one value."""
    present: dict[str, pa.Array] = {}
    if not pa.types.is_struct(attr.type):  # the elements of lists that are all empty
        return present
    for f in attr.type:
        if f.name == "NULL":
            continue
        values = pc.struct_field(attr, f.name)
        if values.null_count < len(values):
            present[f.name] = values
    return present


def bool_text(values: pa.Array) -> pa.Array:
    """BOOL values as ``true`` / ``false``."""
    return pc.if_else(values, TRUE_TEXT, FALSE_TEXT)


def elements(lists: pa.Array) -> pa.Array:
    """The values of every list of ``lists`` in order (null lists hold none)."""
    return pc.list_flatten(lists)


def relist(lists: pa.Array, convert: Callable[[pa.Array], pa.Array]) -> pa.Array:
    """``lists`` with their elements replaced by ``convert(elements)``, offsets kept."""
    offsets = lists.offsets
    start, end = offsets[0].as_py(), offsets[-1].as_py()
    values = lists.values.slice(start, end - start)
    if start:
        offsets = pc.subtract(offsets, start)
    converted = convert(values)
    mask = pc.is_null(lists) if lists.null_count else None
    return pa.ListArray.from_arrays(offsets, converted, mask=mask)


class DuplicateColumnError(PermanentError):
    """``unnest_depth`` made two attributes into one column name."""


def unnest(images: pa.StructArray | None, depth: int) -> pa.StructArray | None:
    """Maps flattened into dotted attributes (``address.city``) down to ``depth`` levels.

    An attribute that is a map in some items and another kind of value in others keeps those
    other values under its own name.

    Raises:
        DuplicateColumnError: a flattened name is also an attribute (or another flattened
            name) of the batch.
    """
    if (
        images is None
        or depth <= 0
        or not any(pa.types.is_struct(f.type) and "M" in f.type.names for f in images.type)
    ):
        return images
    names: list[str] = []
    seen: set[str] = set()
    arrays: list[pa.Array] = []

    def add(name: str, typed: pa.Array) -> None:
        if name in seen:
            raise DuplicateColumnError(
                f"unnest_depth {depth}: the column name {name!r} comes from two attributes "
                "(an attribute with a dot in its name, and a map key); lower unnest_depth or "
                "rename the attribute"
            )
        names.append(name)
        seen.add(name)
        arrays.append(typed)

    def visit(name: str, typed: pa.StructArray, level: int) -> None:
        if level and typed.null_count == len(typed):
            return  # a key no map of the batch has
        tags = typed.type.names
        if level >= depth or "M" not in tags:
            add(name, typed)
            return
        maps = pc.struct_field(typed, "M")
        others = [t for t in tags if t not in ("M", "NULL")]
        if any(pc.struct_field(typed, t).null_count < len(typed) for t in others):
            rest = [pc.struct_field(typed, t) for t in others]
            add(name, pa.StructArray.from_arrays(rest, names=others))
        for key in maps.type.names:
            visit(f"{name}.{key}", pc.struct_field(maps, key), level + 1)

    for f in images.type:
        visit(f.name, pc.struct_field(images, f.name), 0)
    mask = pc.is_null(images) if images.null_count else None
    return pa.StructArray.from_arrays(arrays, names=names, mask=mask)
