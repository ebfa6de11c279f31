#!/usr/bin/env python3
"""Catalog compatibility: compares the event catalog nats/asyncapi.json with the last released
one (nats/released/asyncapi-<version>.json, the highest version) and fails on a breaking change
to a type that was released. Within a released type (`lead.changed.v1`, ...) consumers rely on
what they read, so these are breaking:

  - the type is gone, or moved to another subject;
  - a field (payload attribute, `data` field at any depth, header) is removed or renamed;
  - a field's JSON type, `const`, `format` or `pattern` changed;
  - an `enum` lost a value (narrowed);
  - a field became required that was not (a new required field, or an optional one made required).

Allowed: a new type (a `.v2` beside its `.v1`), a new optional field, a widened enum, changed
descriptions. An incompatible change is a new type version; see docs/CONSUMERS.md.

    catalog_compat.py [CURRENT [RELEASED]]     # exit 1 and one line per breaking change
"""

import glob
import json
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def resolve(doc, node):
    """`node` with its `$ref` (local only) followed and its `allOf` merged into one schema."""
    while isinstance(node, dict) and "$ref" in node:
        target = doc
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    if isinstance(node, dict) and "allOf" in node:
        merged = {k: v for k, v in node.items() if k != "allOf"}
        for part in node["allOf"]:
            part = resolve(doc, part)
            props = {**merged.get("properties", {})}
            for name, schema in part.get("properties", {}).items():
                props[name] = {**resolve(doc, props.get(name, {})), **resolve(doc, schema)}
            merged.update({k: v for k, v in part.items() if k not in ("properties", "required")})
            merged["properties"] = props
            merged["required"] = sorted(set(merged.get("required", [])) | set(part.get("required", [])))
        node = merged
    return node


def types_of(schema):
    t = schema.get("type")
    return set(t) if isinstance(t, list) else ({t} if t else set())


def compare(old_doc, new_doc, old, new, where, out):
    old, new = resolve(old_doc, old), resolve(new_doc, new)
    if types_of(old) != types_of(new) and types_of(old):
        out.append(f"{where}: type {sorted(types_of(old))} became {sorted(types_of(new))}")
    for key in ("const", "format", "pattern"):
        if key in old and old.get(key) != new.get(key):
            out.append(f"{where}: {key} {old[key]!r} became {new.get(key)!r}")
    if "enum" in old:
        lost = [v for v in old["enum"] if v not in new.get("enum", old["enum"])]
        if lost:
            out.append(f"{where}: enum lost {lost}")
    old_props, new_props = old.get("properties", {}), new.get("properties", {})
    for name, schema in old_props.items():
        if name not in new_props:
            out.append(f"{where}.{name}: removed")
        else:
            compare(old_doc, new_doc, schema, new_props[name], f"{where}.{name}", out)
    for name in sorted(set(new.get("required", [])) - set(old.get("required", []))):
        state = "optional field became required" if name in old_props else "new required field"
        out.append(f"{where}.{name}: {state}")
    if "items" in old:
        compare(old_doc, new_doc, old["items"], new.get("items", {}), f"{where}[]", out)


def messages(doc):
    """{type name: (subject, message)} of every message on a channel."""
    found = {}
    for channel in doc.get("channels", {}).values():
        for message in channel.get("messages", {}).values():
            message = resolve(doc, message)
            found[message["name"]] = (channel.get("address"), message)
    return found


def breaking_changes(released, current):
    out = []
    old_messages, new_messages = messages(released), messages(current)
    for name, (subject, old) in sorted(old_messages.items()):
        if name not in new_messages:
            out.append(f"{name}: type removed")
            continue
        new_subject, new = new_messages[name]
        if new_subject != subject:
            out.append(f"{name}: subject {subject!r} became {new_subject!r}")
        for part in ("headers", "payload"):
            compare(released, current, old.get(part, {}), new.get(part, {}), f"{name} {part}", out)
    return out


def latest_release():
    def version(path):
        return tuple(int(n) for n in re.findall(r"\d+", os.path.basename(path)))
    releases = glob.glob(os.path.join(ROOT, "nats", "released", "asyncapi-*.json"))
    if not releases:
        sys.exit("no released catalog in nats/released/")
    return max(releases, key=version)


def main(argv):
    current = argv[1] if len(argv) > 1 else os.path.join(ROOT, "nats", "asyncapi.json")
    released = argv[2] if len(argv) > 2 else latest_release()
    with open(current) as f, open(released) as g:
        problems = breaking_changes(json.load(g), json.load(f))
    for problem in problems:
        print(f"breaking: {problem}")
    name = os.path.relpath(released, ROOT)
    print(f"{len(problems)} breaking change(s) against {name}" if problems
          else f"catalog compatible with {name}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
