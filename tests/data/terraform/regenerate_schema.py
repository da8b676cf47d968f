"""Regenerate google-provider-schema.json, the provider schema tests/contract/test_terraform_schema.py checks
deploy/terraform against, without Terraform and without the Terraform registry.

The npm package @cdktf/provider-google is generated from the provider's own schema (`terraform providers
schema -json`) for one provider version, named in its package.json (`cdktf.provider.version`). Its JSII
metadata (`.jsii`) has every resource and data source as a class with a config struct per block, each
property documented with the Terraform name (`...docs/resources/<type>#<name>`), and its compiled
JavaScript marks every computed attribute (`// <name> - computed: true, ...`).

Kept: the name of every resource and data source type of that version (so a misspelt type is told apart
from one not vendored yet), and the full schema (arguments with required-ness, nested blocks, readable
attributes) of every type the Terraform tree uses plus the provider block's. Run from the repository root
after adding a resource type to deploy/terraform or changing the provider pin (needs npm and the npm
registry; nothing at test time does):

    python tests/data/terraform/regenerate_schema.py [--package-version 16.12.1]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
TERRAFORM = ROOT / "deploy" / "terraform"
OUT = Path(__file__).resolve().parent / "google-provider-schema.json"

# @cdktf/provider-google 16.12.1 is generated from hashicorp/google 6.50.0, the last 6.x release, which
# is what `version = "~> 6.0"` resolves to (and what .terraform.lock.hcl records).
PACKAGE = "@cdktf/provider-google"
PACKAGE_VERSION = "16.12.1"

TYPE_LINK = re.compile(r"/docs/(resources|data-sources)/\w+ ((?:google)\w*)\}")
NAME_ANCHOR = re.compile(r"#(\w+) \w+#\w+\}")
COMPUTED = re.compile(r"^\s*// (\w+) - computed: true, optional: (true|false), required: (true|false)$", re.M)


def snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def unpack(package_version: str, workdir: Path) -> Path:
    subprocess.run(["npm", "pack", "--silent", f"{PACKAGE}@{package_version}"], cwd=workdir, check=True,
                   stdout=subprocess.DEVNULL)
    (tarball,) = workdir.glob("*.tgz")
    with tarfile.open(tarball) as archive:
        members = [m for m in archive.getmembers()
                   if m.name in ("package/.jsii", "package/package.json") or
                   (m.name.startswith("package/lib/") and m.name.endswith("/index.js"))]
        archive.extractall(workdir, members=members, filter="data")
    return workdir / "package"


class Extractor:
    def __init__(self, package: Path) -> None:
        self.package = package
        self.types: dict[str, Any] = json.loads((package / ".jsii").read_text(encoding="utf-8"))["types"]

    def struct_fqns(self, type_ref: dict[str, Any]) -> list[str]:
        """The config structs a property's type names (a block), or none (a plain argument)."""
        if "fqn" in type_ref:
            target = self.types.get(type_ref["fqn"])
            return [type_ref["fqn"]] if target and target.get("datatype") else []
        if "collection" in type_ref:
            return self.struct_fqns(type_ref["collection"]["elementtype"])
        if "union" in type_ref:
            return [fqn for member in type_ref["union"]["types"] for fqn in self.struct_fqns(member)]
        return []

    def block(self, fqn: str, seen: tuple[str, ...] = ()) -> dict[str, Any]:
        arguments: dict[str, bool] = {}
        blocks: dict[str, Any] = {}
        if fqn in seen:  # a recursive schema: accept anything below this depth
            return {"arguments": {}, "blocks": {}, "open": True}
        for prop in self.types[fqn].get("properties", []):
            docs = " ".join(prop.get("docs", {}).values())
            anchor = NAME_ANCHOR.search(docs)
            name = anchor.group(1) if anchor else snake(prop["name"])
            required = not prop.get("optional", False)
            structs = self.struct_fqns(prop["type"])
            if structs:
                nested = self.block(structs[0], (*seen, fqn))
                nested["required"] = required
                blocks[name] = nested
            else:
                arguments[name] = required
        return {"arguments": dict(sorted(arguments.items())), "blocks": dict(sorted(blocks.items()))}

    def computed(self, cls: dict[str, Any]) -> list[str]:
        source = (self.package / cls["locationInModule"]["filename"]).with_suffix(".js")
        source = self.package / "lib" / source.relative_to(self.package / "src")
        text = source.read_text(encoding="utf-8")
        start = text.index(f"\nclass {cls['name']} extends cdktf.Terraform")
        end = text.index(f"\nexports.{cls['name']} = ", start)
        return sorted({m.group(1) for m in COMPUTED.finditer(text[start:end])})

    def schema(self, cls: dict[str, Any]) -> dict[str, Any]:
        config = cls["initializer"]["parameters"][-1]["type"]["fqn"]
        schema = self.block(config)
        readable = {"id", *schema["arguments"], *schema["blocks"], *self.computed(cls)}
        schema["attributes"] = sorted(readable)
        return schema

    def run(self, wanted: set[tuple[str, str]]) -> dict[str, Any]:
        kinds = {"cdktf.TerraformResource": "resources", "cdktf.TerraformDataSource": "data_sources"}
        names: dict[str, list[str]] = {"resources": [], "data_sources": []}
        schemas: dict[str, dict[str, Any]] = {"resources": {}, "data_sources": {}}
        provider: dict[str, Any] = {}
        for cls in self.types.values():
            if cls.get("kind") != "class":
                continue
            if cls.get("base") == "cdktf.TerraformProvider":
                provider = self.block(cls["initializer"]["parameters"][-1]["type"]["fqn"])
                continue
            kind = kinds.get(cls.get("base", ""))
            if kind is None:
                continue
            match = TYPE_LINK.search(cls["docs"]["summary"])
            if match is None:
                raise SystemExit(f"no Terraform type in the docs of {cls['fqn']}")
            type_name = match.group(2)
            names[kind].append(type_name)
            if (kind, type_name) in wanted:
                schemas[kind][type_name] = self.schema(cls)
        missing = sorted(f"{kind} {name}" for kind, name in wanted if name not in schemas[kind])
        if missing:
            raise SystemExit(f"not in {PACKAGE}: {', '.join(missing)}")
        return {
            "resource_types": sorted(names["resources"]),
            "data_source_types": sorted(names["data_sources"]),
            "provider_config": provider,
            "resources": dict(sorted(schemas["resources"].items())),
            "data_sources": dict(sorted(schemas["data_sources"].items())),
        }


def used_types() -> set[tuple[str, str]]:
    """(resources|data_sources, type) of every google resource and data source the tree declares."""
    import hcl2  # the dev extra's; imported here so --help works without it

    wanted: set[tuple[str, str]] = set()
    for path in sorted(TERRAFORM.rglob("*.tf")):
        if ".terraform" in path.parts:
            continue
        parsed = hcl2.loads(path.read_text(encoding="utf-8"))
        for key, kind in (("resource", "resources"), ("data", "data_sources")):
            for entry in parsed.get(key, []):
                for type_name in entry:
                    type_name = type_name.strip('"')
                    if type_name.startswith("google"):
                        wanted.add((kind, type_name))
    return wanted


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package-version", default=PACKAGE_VERSION)
    parser.add_argument("--unpacked", type=Path, help="an already unpacked package/ folder (skips npm pack)")
    args = parser.parse_args()
    wanted = used_types()
    with tempfile.TemporaryDirectory() as tmp:
        package = args.unpacked or unpack(args.package_version, Path(tmp))
        manifest = json.loads((package / "package.json").read_text(encoding="utf-8"))
        extracted = Extractor(package).run(wanted)
    document = {
        "provider": manifest["cdktf"]["provider"]["name"],
        "provider_version": manifest["cdktf"]["provider"]["version"],
        "generated_from": f"{PACKAGE}@{manifest['version']}",
        "regenerate": "python tests/data/terraform/regenerate_schema.py",
        **extracted,
    }
    OUT.write_text(json.dumps(document, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    print(f"{OUT.relative_to(ROOT)}: {document['provider']} {document['provider_version']}, "
          f"{len(extracted['resources'])} resource and {len(extracted['data_sources'])} data source schemas")
    return 0


if __name__ == "__main__":
    sys.exit(main())
