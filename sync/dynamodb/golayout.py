"""Go-style time layouts (``2006-01-02T15:04:05.000Z07:00``) parsed in bulk with Arrow.

Spice's ``time_format`` is a Go layout: the reference time ``Mon Jan 2 15:04:05 MST 2006``
written the way the values are. A layout is translated once into an anchored regular
expression with named groups; a column of strings is then parsed by Arrow kernels alone
(``extract_regex``, ``strptime``, arithmetic), never value by value in Python.

Elements understood: ``2006`` ``06`` (year), ``01`` ``1`` ``Jan`` ``January`` (month), ``02``
``2`` ``_2`` (day), ``15`` (hour), ``03`` ``3`` (12-hour clock) with ``PM`` / ``pm``, ``04``
``4`` (minute), ``05`` ``5`` (second), ``.000`` ``.999`` (any number of 0s or 9s, ``,`` too:
fractional seconds), ``Mon`` ``Monday`` (weekday, checked for letters only), ``Z07:00``
``Z0700`` ``Z07`` ``-07:00`` ``-0700`` ``-07`` (numeric zone, ``Z`` for UTC where the element
starts with Z), ``MST`` (a zone abbreviation: read as UTC, as Go does for abbreviations it
does not know). Everything else is literal text.

Parsing is lenient about fractional seconds, as Go's ``.999`` is: a fraction of 1 to 9
digits may follow the seconds or be absent, whatever the layout says (digits beyond
microseconds are truncated). A layout without a zone reads times as UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import pyarrow as pa
import pyarrow.compute as pc

MONTHS = (
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
)
_REGEX_SPECIAL = set(".^$*+?()[]{}|\\")

# (layout element, group name or None, regex); longest first where one is a prefix of another.
_ELEMENTS: tuple[tuple[str, str | None, str], ...] = (
    ("January", "month_name", r"[A-Za-z]{3,9}"),
    ("Jan", "month_abbr", r"[A-Za-z]{3}"),
    ("Monday", None, r"[A-Za-z]{6,9}"),
    ("Mon", None, r"[A-Za-z]{3}"),
    ("MST", "zone_name", r"[A-Za-z]{3,5}"),
    ("2006", "year", r"\d{4}"),
    ("002", None, r"\d{3}"),  # day of the year: accepted, not used (the date has it)
    ("01", "month", r"\d{2}"),
    ("02", "day", r"\d{2}"),
    ("03", "hour12", r"\d{2}"),
    ("04", "minute", r"\d{2}"),
    ("05", "second", r"\d{2}"),
    ("06", "year2", r"\d{2}"),
    ("15", "hour", r"\d{1,2}"),
    ("1", "month", r"\d{1,2}"),
    ("_2", "day", r" ?\d{1,2}"),
    ("2", "day", r"\d{1,2}"),
    ("3", "hour12", r"\d{1,2}"),
    ("4", "minute", r"\d{1,2}"),
    ("5", "second", r"\d{1,2}"),
    ("PM", "ampm", r"AM|PM"),
    ("pm", "ampm", r"am|pm"),
    ("Z07:00:00", "zone", r"Z|[+-]\d{2}:\d{2}:\d{2}"),
    ("Z070000", "zone", r"Z|[+-]\d{6}"),
    ("Z07:00", "zone", r"Z|[+-]\d{2}:\d{2}"),
    ("Z0700", "zone", r"Z|[+-]\d{4}"),
    ("Z07", "zone", r"Z|[+-]\d{2}"),
    ("-07:00:00", "zone", r"[+-]\d{2}:\d{2}:\d{2}"),
    ("-070000", "zone", r"[+-]\d{6}"),
    ("-07:00", "zone", r"[+-]\d{2}:\d{2}"),
    ("-0700", "zone", r"[+-]\d{4}"),
    ("-07", "zone", r"[+-]\d{2}"),
)
_FRACTION = r"(?:[.,](?P<fraction>\d{1,9}))?"
_UTC = pa.timestamp("us", tz="UTC")
_ISO_TYPE = {True: _UTC, False: pa.timestamp("us")}
# Layouts (fractional seconds aside) whose values Arrow's ISO 8601 cast reads the same way.
_ISO_LAYOUTS = {
    f"2006-01-02{sep}15:04:05{zone}" for sep in ("T", " ") for zone in ("Z07:00", "-07:00", "")
}


def _fraction_length(layout: str, at: int) -> int:
    """Length of a ``.000`` / ``,999`` element at ``at`` (0 if there is none)."""
    if layout[at] not in ".," or at + 1 >= len(layout) or layout[at + 1] not in "09":
        return 0
    end = at + 1
    while end < len(layout) and layout[end] == layout[at + 1]:
        end += 1
    if end < len(layout) and layout[end].isdigit():
        return 0
    return end - at


@dataclass(frozen=True)
class TimeLayout:
    """A compiled Go layout: the regex of the whole value and the groups it captures."""

    layout: str
    regex: str
    groups: frozenset[str]
    iso: bool = False  # every value matching it is ISO 8601, which Arrow's cast parses

    def parse(self, strings: pa.Array) -> pa.Array:
        """Each string as ``timestamp[us, UTC]``; null where it does not match the layout or
        names a date that does not exist (2024-02-30)."""
        strings = strings.cast(pa.string())
        if self.iso and pc.all(pc.match_substring_regex(strings, self.regex)).as_py() is not False:
            # The common case, RFC 3339 values: Arrow's own ISO 8601 parser, one kernel.
            try:
                return pc.cast(strings, _ISO_TYPE["zone" in self.groups]).cast(_UTC)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                pass  # an impossible date, a 1-digit hour, 9 fractional digits: the long way
        return self._parse(strings)

    def _parse(self, strings: pa.Array) -> pa.Array:
        parts = pc.extract_regex(strings, self.regex)

        def group(name: str) -> pa.Array:
            return pc.struct_field(parts, name)

        def number(name: str, default: int) -> pa.Array:
            if name not in self.groups:
                return pa.repeat(pa.scalar(default, pa.int64()), len(strings))
            text = pc.utf8_trim_whitespace(group(name))
            return pc.cast(pc.if_else(pc.equal(text, ""), str(default), text), pa.int64())

        if "year2" in self.groups:  # Go: 69–99 are 19xx, 00–68 are 20xx
            short = number("year2", 70)
            year = pc.add(short, pc.if_else(pc.greater_equal(short, 69), 1900, 2000))
        else:
            year = number("year", 1970)
        month = self._month(group, number)
        day = number("day", 1)
        hour = number("hour", 0)
        if "hour12" in self.groups:
            hour12 = pc.cast(pc.utf8_trim_whitespace(group("hour12")), pa.int64())
            pm = pc.equal(pc.utf8_upper(group("ampm")), "PM") if "ampm" in self.groups else False
            hour = pc.if_else(pc.equal(hour12, 12), 0, hour12)  # 12 AM is 0 h, 12 PM 12 h
            hour = pc.if_else(pm, pc.add(hour, 12), hour)
        minute = number("minute", 0)
        second = number("second", 0)

        def padded(values: pa.Array, width: int) -> pa.Array:
            return pc.utf8_lpad(pc.cast(values, pa.string()), width, "0")

        iso = pc.binary_join_element_wise(
            padded(year, 4),
            "-",
            padded(month, 2),
            "-",
            padded(day, 2),
            " ",
            padded(hour, 2),
            ":",
            padded(minute, 2),
            ":",
            padded(second, 2),
            "",
        )
        naive = pc.strptime(iso, "%Y-%m-%d %H:%M:%S", "us", error_is_null=True)
        # strptime rolls impossible dates over (02-30 → 03-01): such values do not parse.
        exists = pc.and_(pc.equal(pc.day(naive), day), pc.equal(pc.month(naive), month))
        naive = pc.if_else(pc.fill_null(exists, False), naive, None)
        if "fraction" in self.groups:
            digits = pc.utf8_rpad(pc.utf8_slice_codeunits(group("fraction"), 0, 6), 6, "0")
            micros = pc.cast(pc.cast(digits, pa.int64()), pa.duration("us"))
            naive = pc.add(naive, micros)
        if "zone" in self.groups:
            naive = pc.subtract(naive, self._offset(group("zone")))
        return pc.cast(naive, pa.timestamp("us", tz="UTC"))

    def _month(self, group: object, number: object) -> pa.Array:
        name_group = next((g for g in ("month_name", "month_abbr") if g in self.groups), None)
        if name_group is None:
            return number("month", 1)  # type: ignore[operator]
        names = pc.utf8_lower(group(name_group))  # type: ignore[operator]
        full = pc.index_in(names, value_set=pa.array(MONTHS))
        short = pc.index_in(names, value_set=pa.array([m[:3] for m in MONTHS]))
        return pc.add(pc.coalesce(full, short), 1)  # null (no such month) fails strptime

    @staticmethod
    def _offset(zone: pa.Array) -> pa.Array:
        """``Z`` / ``±hh`` / ``±hhmm`` / ``±hh:mm`` / ``±hh:mm:ss`` as a duration east of UTC."""
        digits = pc.replace_substring(pc.utf8_slice_codeunits(zone, 1), ":", "")
        digits = pc.utf8_rpad(digits, 6, "0")
        hours = pc.cast(pc.utf8_slice_codeunits(digits, 0, 2), pa.int64())
        minutes = pc.cast(pc.utf8_slice_codeunits(digits, 2, 4), pa.int64())
        seconds = pc.cast(pc.utf8_slice_codeunits(digits, 4, 6), pa.int64())
        total = pc.add(pc.add(pc.multiply(hours, 3600), pc.multiply(minutes, 60)), seconds)
        signed = pc.if_else(pc.starts_with(zone, "-"), pc.negate(total), total)
        utc = pc.equal(zone, "Z")
        return pc.cast(pc.multiply(pc.if_else(utc, 0, signed), 1_000_000), pa.duration("us"))


@lru_cache(maxsize=32)
def compile_layout(layout: str) -> TimeLayout:
    """Translate a Go layout into a :class:`TimeLayout`.

    Raises:
        ValueError: the layout has no date, or sets one element twice.
    """
    pattern = ["^"]
    groups: set[str] = set()
    at = 0
    previous: str | None = None
    while at < len(layout):
        width = _fraction_length(layout, at)
        if width:
            if "fraction" in groups:
                raise ValueError(f"time_format {layout!r} has two fractional-second elements")
            pattern.append(_FRACTION)
            groups.add("fraction")
            previous, at = "fraction", at + width
            continue
        for element, name, regex in _ELEMENTS:
            if layout.startswith(element, at):
                if name is not None and name in groups:
                    raise ValueError(f"time_format {layout!r} sets {name} twice")
                pattern.append(f"(?P<{name}>{regex})" if name else f"(?:{regex})")
                if name is not None:
                    groups.add(name)
                previous, at = name, at + len(element)
                break
        else:
            char = layout[at]
            pattern.append("\\" + char if char in _REGEX_SPECIAL else char)
            at += 1
            previous = None
            continue
        if previous == "second" and (at >= len(layout) or not _fraction_length(layout, at)):
            # Go accepts a fraction right after the seconds even when the layout has none.
            pattern.append(_FRACTION)
            groups.add("fraction")
    pattern.append("$")
    if not ({"year", "year2"} & groups and {"month", "month_name", "month_abbr"} & groups):
        raise ValueError(
            f"time_format {layout!r} has no year and month: write the reference time "
            "Mon Jan 2 15:04:05 MST 2006 the way the values are, e.g. 2006-01-02T15:04:05Z07:00"
        )
    if "hour12" in groups and "hour" in groups:
        raise ValueError(f"time_format {layout!r} has both a 24-hour and a 12-hour clock")
    without_fraction = layout
    for at in range(len(layout)):
        width = _fraction_length(layout, at)
        if width:
            without_fraction = layout[:at] + layout[at + width :]
            break
    iso = without_fraction in _ISO_LAYOUTS
    return TimeLayout(layout, "".join(pattern), frozenset(groups), iso)


_DATE = compile_layout("2006-01-02")


def parse_date(strings: pa.Array) -> pa.Array:
    """``YYYY-MM-DD`` strings as ``date32``; null where not such a date."""
    strings = strings.cast(pa.string())
    if pc.all(pc.match_substring_regex(strings, _DATE.regex)).as_py() is not False:
        try:
            return pc.cast(strings, pa.date32())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass  # an impossible date: the long way, which makes it null
    return pc.cast(pc.cast(_DATE._parse(strings), pa.timestamp("us")), pa.date32())


DATE_REGEX = _DATE.regex
