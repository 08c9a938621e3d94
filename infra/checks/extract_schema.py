#!/usr/bin/env python3
"""Extracts the azurerm provider schema (argument and block names, which are required, which
attributes are computed) from the jsii manifest inside a CDK Terrain prebuilt provider wheel
(PyPI `cdktn-provider-azurerm`: 18.x is azurerm 5.x, 17.x is azurerm 4.x). Those bindings are
generated from the provider's own `terraform providers schema -json`, so they carry the real
argument names without downloading a provider.

usage: extract_schema.py WHEEL OUT.json        (standard library only)
"""
import io
import json
import re
import sys
import tarfile
import zipfile

# "{@link https://registry.terraform.io/providers/hashicorp/azurerm/5.10.0/docs/resources/x azurerm_x}"
DOC_LINK = re.compile(
    r"\{@link https://registry\.terraform\.io/providers/[\w-]+/[\w-]+/([\w.]+)/docs/"
    r"(resources|data-sources|ephemeral-resources)/\w+ (\w+)\}"
)
# "...docs/resources/x#argument_name X#argument_name}" -> the Terraform name of a property
ANCHOR = re.compile(r"#(\w+) [\w]+#\w+\}")
META = ("count", "for_each", "provider", "lifecycle", "depends_on", "connection", "provisioners")
BUCKETS = {"resources": "resources", "data-sources": "data_sources",
           "ephemeral-resources": "ephemeral_resources"}


def load_jsii(path):
    wheel = zipfile.ZipFile(path)
    inner = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
    tgz = tarfile.open(fileobj=io.BytesIO(wheel.read(inner)))
    member = next(m for m in tgz.getmembers() if m.name.endswith("/.jsii"))
    return json.load(tgz.extractfile(member))


def snake(name):
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    jsii = load_jsii(sys.argv[1])
    types, pkg = jsii["types"], jsii["name"]

    def nested_block(t):
        """(interface fqn, is_list) when the jsii type t is a nested block, else None."""
        if "union" in t:
            return next(filter(None, (nested_block(u) for u in t["union"]["types"])), None)
        if "collection" in t:
            inner = nested_block(t["collection"]["elementtype"])
            return (inner[0], True) if inner else None
        fqn = t.get("fqn", "")
        if fqn.startswith(pkg + ".") and types.get(fqn, {}).get("kind") == "interface":
            return (fqn, False)
        return None

    def tf_name(prop):
        docs = prop.get("docs", {})
        for key in ("summary", "remarks"):
            m = ANCHOR.search(docs.get(key, "") or "")
            if m:
                return m.group(1)
        m = re.match(r"(\w+) block\.", docs.get("summary", ""))
        return m.group(1) if m else snake(prop["name"])

    def block_schema(iface, seen=()):
        attrs, blocks = {}, {}
        for prop in types[iface].get("properties", []):
            name, required = tf_name(prop), not prop.get("optional", False)
            nested = nested_block(prop["type"])
            if nested and nested[0] not in seen:
                blocks[name] = {"required": required, "list": nested[1],
                                "schema": block_schema(nested[0], seen + (nested[0],))}
            else:
                attrs[name] = {"required": required}
        return {"attributes": attrs, "blocks": blocks}

    def computed(cls_fqn, seen=frozenset()):
        """Every attribute the resource class exposes (arguments and computed attributes)."""
        out, cls = {}, types.get(cls_fqn)
        if not cls or cls_fqn in seen:
            return out
        for prop in cls.get("properties", []):
            if prop.get("static") or prop["name"].endswith("Input") or prop["name"] in (
                    "fqn", "creationStack", "terraformResourceType", "internalValue"):
                continue
            fqn = prop["type"].get("fqn", "")
            sub = {}
            if fqn.startswith(pkg + ".") and fqn.endswith(("OutputReference", "List", "Map")):
                ref = fqn[:-4] + "OutputReference" if fqn.endswith("List") else fqn
                sub = computed(ref, seen | {cls_fqn})
            out[snake(prop["name"])] = sub
        return out

    doc = {"source": f"{pkg}@{jsii['version']}", "provider_version": None, "provider": None,
           "resources": {}, "data_sources": {}, "ephemeral_resources": {}}
    for fqn, t in types.items():
        if t.get("kind") != "class":
            continue
        m = DOC_LINK.search(t.get("docs", {}).get("summary", ""))
        if not m:
            if fqn.endswith("Provider") and ".provider." in fqn and fqn + "Config" in types:
                doc["provider"] = block_schema(fqn + "Config")
            continue
        version, kind, tfname = m.groups()
        if fqn + "Config" not in types:
            continue
        schema = block_schema(fqn + "Config")
        for meta in META:
            schema["attributes"].pop(meta, None)
            schema["blocks"].pop(meta, None)
        schema["computed"] = computed(fqn)
        doc[BUCKETS[kind]][tfname] = schema
        doc["provider_version"] = version
    with open(sys.argv[2], "w") as out:
        json.dump(doc, out, sort_keys=True, separators=(",", ":"))
    print(f"{doc['source']} = hashicorp/azurerm {doc['provider_version']}: "
          f"{len(doc['resources'])} resources, {len(doc['data_sources'])} data sources")


if __name__ == "__main__":
    main()
