"""`schemas.normalize.to_record`, compiled once per schema for the gateway's hot path.

The generic normalizer walks the schema's JSON for every value; here each field's checks are
worked out once, at import, so a report_new_msg is typed several times faster. The result and
the FieldError (path, value, expected) are the same as `to_record`'s for every input:
tests/gateway/test_converters.py compares both on the sample corpus and on crafted values.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from schemas.normalize import FieldError, check_minimum, integer_converter, minimum_of, string_converter

Convert = Callable[[Any, str], Any]

_MISSING = object()


def _boolean(value: Any, path: str) -> bool:
    if isinstance(value, bool):
        return value
    raise FieldError(path, value, "true or false")


def _unsupported(kind: Any) -> Convert:
    def convert(value: Any, path: str) -> Any:
        raise FieldError(path, value, f"a value of Avro type {kind}")

    return convert


def _value(kind: Any, identifier: bool) -> Convert:
    if kind in ("int", "long"):
        return integer_converter(kind)
    if isinstance(kind, dict) and kind.get("logicalType") == "timestamp-millis":
        return integer_converter("long")
    if kind == "string":
        return string_converter(identifier)
    if kind == "boolean":
        return _boolean
    if isinstance(kind, dict) and kind.get("type") == "record":
        return compile_record(kind)
    return _unsupported(kind)


def _nullable(field_type: Any) -> tuple[bool, Any]:
    if isinstance(field_type, list):
        branches = [branch for branch in field_type if branch != "null"]
        return len(branches) < len(field_type), branches[0]
    return False, field_type


def _array(items: Any) -> Convert:
    convert_item = _value(items, False)

    def convert(value: Any, path: str) -> list[Any]:
        if value is None or value == "":
            return []
        if not isinstance(value, list):
            raise FieldError(path, value, "an array")
        return [convert_item(item, f"{path}[{index}]") for index, item in enumerate(value)]

    return convert


def _field(field: dict[str, Any]) -> Callable[[Any, bool, str], Any]:
    """Build the converter of one field's value, given whether the key was present and the field's path."""
    required = bool(field.get("wehub_required"))
    nullable, kind = _nullable(field["type"])
    is_text = kind == "string"
    default = None if nullable else field.get("default")
    if isinstance(kind, dict) and kind.get("type") == "array":
        convert_array = _array(kind["items"])

        def array_field(value: Any, present: bool, path: str) -> Any:
            if required and (not present or value is None or value == ""):
                raise FieldError(path, value if present else None, "a value (the field is required)")
            return convert_array(value, path)

        return array_field
    convert = _value(kind, bool(field.get("wehub_identifier")))
    minimum = minimum_of(field)
    if minimum is not None:
        convert_unbounded = convert

        def convert(value: Any, path: str) -> Any:
            return check_minimum(convert_unbounded(value, path), minimum, value, path)

    def value_field(value: Any, present: bool, path: str) -> Any:
        if value is None or not present:
            if required:
                raise FieldError(path, value if present else None, "a value (the field is required)")
            return default
        if value == "":
            if required:
                expected = "a non-empty string" if is_text else "a value (the field is required)"
                raise FieldError(path, value, expected)
            if not is_text:
                return default
        return convert(value, path)

    return value_field


def compile_record(schema: dict[str, Any]) -> Convert:
    """A function equal to `to_record(schema, value, path)` for every value."""
    plans = []
    has_extra = False
    for field in schema["fields"]:
        name = field["name"]
        if name == "extra":
            has_extra = True
            continue
        plans.append((name, tuple(field.get("aliases", ())), _field(field)))
    spellings = [spelling for name, aliases, _ in plans for spelling in (name, *aliases)]
    # Counting the keys used shows whether any is unknown only when no two fields share a spelling.
    count_is_exact = len(spellings) == len(set(spellings))

    def convert(value: Any, path: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise FieldError(path, value, "an object")
        record: dict[str, Any] = {}
        used = 0
        prefix = f"{path}." if path else ""
        for name, aliases, convert_field in plans:
            item = value.get(name, _MISSING)
            if item is _MISSING and aliases:
                for alias in aliases:
                    item = value.get(alias, _MISSING)
                    if item is not _MISSING:
                        break
            present = item is not _MISSING
            used += present
            record[name] = convert_field(item if present else None, present, prefix + name)
        if has_extra:
            record["extra"] = _extra(value, plans) if used < len(value) or not count_is_exact else None
        return record

    return convert


def _extra(value: dict[str, Any], plans: list[tuple[str, tuple[str, ...], Any]]) -> str | None:
    used = set()
    for name, aliases, _ in plans:
        if name in value:
            used.add(name)
            continue
        alias = next((alias for alias in aliases if alias in value), None)
        if alias is not None:
            used.add(alias)
    unknown = {key: item for key, item in value.items() if key not in used}
    return orjson.dumps(unknown).decode() if unknown else None
