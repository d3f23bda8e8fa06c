"""JSON output: upstream's protojson of a reply, as upstream's ``--json`` prints it.

:func:`to_json` is what every ``--json`` path prints: for a reply whose upstream message differs
from ours (jobs, nodes, partitions, submissions, changes, reservations, licenses) the translation
in :mod:`crane_cli.upjson`; for one that already has upstream's shape (the accounting replies of
cacctmgr) or that upstream does not have (``crane info``) the message itself, with proto field
names, default values emitted and fields in declaration order. Either way compact, on one line,
as Go's protojson writes it (:func:`crane_cli.upjson.dumps`).

The keyword that asks protobuf for the defaults was renamed in protobuf 5.26
(``including_default_value_fields`` -> ``always_print_fields_with_no_presence``); both are handled.
"""

from __future__ import annotations

from crane_cli.errors import EXIT_FORMAT, CliError


def _options(json_format: object) -> dict[str, bool]:
    import inspect

    params = inspect.signature(json_format.MessageToDict).parameters  # type: ignore[attr-defined]
    if "always_print_fields_with_no_presence" in params:
        return {"preserving_proto_field_name": True, "always_print_fields_with_no_presence": True}
    return {"preserving_proto_field_name": True, "including_default_value_fields": True}


def _in_field_order(data: dict, descriptor: object) -> dict:
    """Reorder ``data`` (and nested messages) by field number, as Go's protojson prints them."""
    out = {}
    for field in descriptor.fields:  # type: ignore[attr-defined]
        name = field.name
        if name not in data:
            continue
        value = data[name]
        sub = field.message_type
        if sub is not None and sub.GetOptions().map_entry:
            if isinstance(value, dict):  # map entries sorted by key (integer keys numerically), as protojson
                key_field = sub.fields_by_name["key"]
                numeric = key_field.cpp_type in (1, 2, 3, 4)  # int32 int64 uint32 uint64
                value = dict(sorted(value.items(), key=lambda kv: int(kv[0]) if numeric else kv[0]))
        elif sub is not None:
            if isinstance(value, list):
                value = [_in_field_order(v, sub) if isinstance(v, dict) else v for v in value]
            elif isinstance(value, dict):
                value = _in_field_order(value, sub)
        out[name] = value
    for name, value in data.items():  # anything not described (should not happen)
        out.setdefault(name, value)
    return out


def to_dict(message: object) -> dict:
    """The message itself as a JSON-ready dict (proto field names, defaults included, in field order)."""
    from google.protobuf import json_format

    try:
        data = json_format.MessageToDict(message, **_options(json_format))  # type: ignore[arg-type]
        return _in_field_order(data, message.DESCRIPTOR)  # type: ignore[attr-defined]
    except Exception as exc:  # noqa: BLE001 - exit code 5 is upstream's "JSON marshalling failed"
        raise CliError(f"Failed to marshal proto message: {exc}", EXIT_FORMAT) from None


def upstream_dict(message: object) -> dict:
    """Upstream's form of ``message``: its translation (:mod:`crane_cli.upjson`) or the message itself."""
    from crane_cli import upjson

    translated = upjson.translate(message)
    return to_dict(message) if translated is None else translated


def dumps(data: object) -> str:
    """Go ``encoding/json``'s ``MarshalIndent`` with 2 spaces (upstream's ceff and ``cacctmgr show event``)."""
    import json

    return json.dumps(data, indent=2, ensure_ascii=False)


def to_json(message: object) -> str:
    """What ``--json`` prints for ``message``: upstream's protojson, compact, one line."""
    from crane_cli.upjson import dumps as compact

    return compact(upstream_dict(message))
