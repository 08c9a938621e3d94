#!/usr/bin/env python3
"""Check 2 of scripts/check_infra.sh: every azurerm resource and data source in a Terraform
folder against the provider schema extracted by extract_schema.py (from the PyPI package
cdktn-provider-azurerm). Fails on: an unknown resource or data source type; an unknown argument
or block, at any depth (dynamic blocks included); an argument written as a block or a block
written as an argument; a single block repeated; a missing required argument or block; a
reference `azurerm_x.name.attr` to an undeclared resource or an attribute it does not have; an
unknown argument in `provider "azurerm"`.

usage: schema_check.py SCHEMA.json TF_DIR        exit 1 when a problem is found
"""
import difflib
import json
import re
import sys

from tfload import Module, is_block, unquote

META_ARGS = {"count", "for_each", "depends_on", "provider"}
META_BLOCKS = {"lifecycle", "provisioner", "connection"}
REF = re.compile(
    r"(?<![\w.])(data\.)?(azurerm_[a-z0-9_]+)\.([A-Za-z_][\w-]*)((?:\[[^\]]*\])?)\.([a-z_][a-z0-9_]*)")


def hint(name, known):
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


class Checker:
    def __init__(self, schema):
        self.schema = schema
        self.version = schema["provider_version"]
        self.errors = []

    def err(self, where, what):
        self.errors.append(f"{where}: {what}")

    def body(self, body, schema, path, where):
        attrs, blocks = schema.get("attributes", {}), schema.get("blocks", {})
        seen = set()
        for key, value in body.items():
            if key.startswith("__") or key in META_ARGS or key in META_BLOCKS:
                continue
            if key == "dynamic" and isinstance(value, list):
                for dyn in value:
                    for name, inner in (dyn.items() if isinstance(dyn, dict) else ()):
                        if name.startswith("__"):
                            continue
                        name = unquote(name)
                        seen.add(name)
                        if name not in blocks:
                            self.err(where, f"{path}: unknown dynamic block '{name}'{hint(name, blocks)}")
                            continue
                        for content in inner.get("content", []) if isinstance(inner, dict) else []:
                            self.body(content, blocks[name]["schema"], f"{path}.{name}", where)
                continue
            if is_block(value):
                if key in blocks:
                    seen.add(key)
                    if not blocks[key]["list"] and len(value) > 1:
                        self.err(where, f"{path}: block '{key}' may appear only once")
                    for b in value:
                        self.body(b, blocks[key]["schema"], f"{path}.{key}", where)
                elif key in attrs:
                    self.err(where, f"{path}: '{key}' is an argument: write `{key} = ...`, not a block")
                else:
                    self.err(where, f"{path}: unknown block '{key}'{hint(key, set(blocks) | set(attrs))}")
            elif key in attrs:
                seen.add(key)
            elif key in blocks:
                seen.add(key)
                self.err(where, f"{path}: '{key}' is a block: write `{key} {{ ... }}`")
            else:
                self.err(where, f"{path}: unknown argument '{key}'{hint(key, set(attrs) | set(blocks))}")
        for name, spec in attrs.items():
            if spec["required"] and name not in seen:
                self.err(where, f"{path}: missing required argument '{name}'")
        for name, spec in blocks.items():
            if spec["required"] and name not in seen:
                self.err(where, f"{path}: missing required block '{name}'")


def strings(x):
    if isinstance(x, str):
        yield x
    elif isinstance(x, dict):
        for k, v in x.items():
            if not k.startswith("__"):
                yield from strings(v)
    elif isinstance(x, list):
        for v in x:
            yield from strings(v)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    schema = json.load(open(sys.argv[1]))
    module = Module(sys.argv[2])
    c = Checker(schema)
    declared = set()
    n = 0
    for kind, bucket in (("resource", "resources"), ("data", "data_sources")):
        for f, rtype, rname, body in module.blocks(kind):
            declared.add((kind, rtype, rname))
            if not rtype.startswith("azurerm_"):
                continue
            n += 1
            addr = ("data." if kind == "data" else "") + f"{rtype}.{rname}"
            where = module.where(f, rtype, rname)
            spec = schema[bucket].get(rtype)
            if spec is None:
                c.err(where, f"{addr}: unknown {kind} type '{rtype}' in azurerm {c.version}"
                      f"{hint(rtype, schema[bucket])}")
                continue
            c.body(body, spec, addr, where)
    for f, doc in module.docs.items():
        for item in doc.get("provider", []):
            for pname, body in item.items():
                if unquote(pname) == "azurerm" and schema.get("provider"):
                    c.body(body, schema["provider"], 'provider "azurerm"', f.name)
    for f, doc in module.docs.items():
        for s in strings(doc):
            for m in REF.finditer(s):
                is_data, rtype, rname, _index, attr = m.groups()
                kind, bucket = ("data", "data_sources") if is_data else ("resource", "resources")
                addr = f"{'data.' if is_data else ''}{rtype}.{rname}"
                if (kind, rtype, rname) not in declared:
                    c.err(f.name, f"reference to {addr}.{attr}, but {addr} is not declared")
                    continue
                spec = schema[bucket].get(rtype)
                if spec and attr not in spec["attributes"] and attr not in spec["blocks"] \
                        and attr not in spec.get("computed", {}):
                    known = set(spec["attributes"]) | set(spec.get("computed", {}))
                    c.err(f.name, f"reference to {addr}.{attr}: {rtype} has no attribute '{attr}'"
                          f"{hint(attr, known)}")
    for e in c.errors:
        print("ERROR", e)
    print(f"{n} azurerm resources and data sources in {len(module.files)} files checked against "
          f"azurerm {c.version} ({schema['source']}): {len(c.errors)} problem(s)")
    sys.exit(1 if c.errors else 0)


if __name__ == "__main__":
    main()
