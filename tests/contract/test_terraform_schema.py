"""deploy/terraform against the google provider's schema, offline: what `terraform validate` would refuse.

No Terraform binary and no registry at test time. Every .tf file under deploy/terraform is parsed
(python-hcl2) and each module checked against tests/data/terraform/google-provider-schema.json, the
schema of the pinned provider version taken from @cdktf/provider-google (regenerate_schema.py beside it):
resource and data source types, arguments (unknown ones and missing required ones), nested and dynamic
blocks, every `google_x.name.attr` / `data.google_x.name.attr` reference (in resources, locals, outputs
and module arguments), `var.`, `local.` and `module.` references, module inputs against the module's
variables, the provider block, and that the vendored schema, the version pins and the lock file agree.
"""

from __future__ import annotations

import ast
import copy
import functools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hcl2  # python-hcl2, the dev extra's
import pytest

ROOT = Path(__file__).resolve().parents[2]
TERRAFORM = ROOT / "deploy" / "terraform"
SCHEMA_FILE = ROOT / "tests" / "data" / "terraform" / "google-provider-schema.json"
LOCK_FILE = TERRAFORM / ".terraform.lock.hcl"
TFVARS = TERRAFORM / "topology.auto.tfvars.json"

RESOURCE_META = {"count", "for_each", "depends_on", "provider", "lifecycle", "provisioner", "connection"}
DATA_META = {"count", "for_each", "depends_on", "provider", "lifecycle"}
MODULE_META = {"source", "version", "count", "for_each", "depends_on", "providers"}
# Terraform's own data source (provider terraform.io/builtin/terraform).
BUILTIN_DATA = {"terraform_remote_state": {"arguments": {"backend", "config", "workspace", "defaults"},
                                           "attributes": {"backend", "config", "workspace", "defaults", "outputs"}}}


def load_schema() -> dict[str, Any]:
    return json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))


def unquote(text: str) -> str:
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] == '"' else text


# ---------------------------------------------------------------- reading a module


@dataclass
class Module:
    path: Path
    files: dict[str, dict[str, Any]] = field(default_factory=dict)  # file name -> parsed

    def blocks(self, kind: str) -> Iterator[tuple[str, dict[str, Any]]]:
        for name, parsed in self.files.items():
            for entry in parsed.get(kind, []):
                yield name, entry

    @property
    def variables(self) -> dict[str, bool]:
        """Variable name -> whether it has a default."""
        return {unquote(var): "default" in body for _, entry in self.blocks("variable") for var, body in entry.items()}

    @property
    def locals(self) -> set[str]:
        return {name for _, entry in self.blocks("locals") for name in entry if not name.startswith("__")}

    @property
    def outputs(self) -> set[str]:
        return {unquote(name) for _, entry in self.blocks("output") for name in entry}

    def declared(self, kind: str) -> set[tuple[str, str]]:
        return {(unquote(type_name), unquote(name))
                for _, entry in self.blocks(kind) for type_name, named in entry.items() for name in named}

    @property
    def module_calls(self) -> dict[str, dict[str, Any]]:
        return {unquote(name): body for _, entry in self.blocks("module") for name, body in entry.items()}


@functools.lru_cache(maxsize=256)
def _parse(text: str) -> dict[str, Any]:
    parsed: dict[str, Any] = hcl2.loads(text)
    return parsed


def parse(text: str) -> dict[str, Any]:
    """python-hcl2's reading of a file (cached: the tests feed the same files many times)."""
    return copy.deepcopy(_parse(text))


def read_modules(files: dict[Path, str]) -> dict[Path, Module]:
    modules: dict[Path, Module] = {}
    for path, text in sorted(files.items()):
        module = modules.setdefault(path.parent, Module(path.parent))
        module.files[path.name] = parse(text)
    return modules


def tree_files() -> dict[Path, str]:
    return {path: path.read_text(encoding="utf-8") for path in sorted(TERRAFORM.rglob("*.tf"))
            if ".terraform" not in path.parts}


# ---------------------------------------------------------------- expressions


def interpolations(text: str) -> Iterator[str]:
    """The expression inside each top-level `${...}` of a python-hcl2 value (braces balanced)."""
    start = text.find("${")
    while start != -1:
        depth, index = 0, start + 1
        while index < len(text):
            depth += {"{": 1, "}": -1}.get(text[index], 0)
            if depth == 0:
                break
            index += 1
        yield text[start + 2:index]
        start = text.find("${", index)


def expressions(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield from interpolations(node)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key.startswith("__"):
                continue
            yield from interpolations(key)
            yield from expressions(value)
    elif isinstance(node, list):
        for item in node:
            yield from expressions(item)


def collapse_indexes(expression: str) -> str:
    """`a.b[each.key].c` -> `a.b[].c`, so a reference's attribute follows its index."""
    previous = None
    while previous != expression:
        previous, expression = expression, re.sub(r"\[[^\[\]]*\]", "[]", expression)
    return expression


NAME = r"[A-Za-z_][\w-]*"
VAR_REF = re.compile(rf"(?<![\w.])var\.({NAME})")
LOCAL_REF = re.compile(rf"(?<![\w.])local\.({NAME})")
MODULE_REF = re.compile(rf"(?<![\w.])module\.({NAME})(?:\[\])?(?:\.({NAME}))?")
DATA_REF = re.compile(rf"(?<![\w.])data\.({NAME})\.({NAME})(?:\[\])?(?:\.({NAME}))?")
RESOURCE_REF = re.compile(rf"(?<![\w.])(google(?:_beta)?_\w+)\.({NAME})(?:\[\])?(?:\.({NAME}))?")


# ---------------------------------------------------------------- the checks


class Checker:
    def __init__(self, schema: dict[str, Any]) -> None:
        self.schema = schema
        self.resource_types = set(schema["resource_types"])
        self.data_types = set(schema["data_source_types"])
        self.problems: list[str] = []

    def report(self, where: str, message: str) -> None:
        self.problems.append(f"{where}: {message}")

    def body(self, where: str, body: dict[str, Any], schema: dict[str, Any], meta: frozenset[str] | set[str] = frozenset()) -> None:
        """A resource's or block's arguments and nested blocks against its schema."""
        arguments: dict[str, bool] = schema["arguments"]
        blocks: dict[str, Any] = schema["blocks"]
        present: set[str] = set()
        for key, value in body.items():
            if key.startswith("__") or key in meta:
                continue
            if key == "dynamic":
                for entry in value:
                    for label, dynamic in entry.items():
                        name = unquote(label)
                        present.add(name)
                        if name not in blocks:
                            self.report(where, f'dynamic "{name}": {name} is not a block here')
                            continue
                        for content in dynamic.get("content", []):
                            self.body(f"{where}.{name}", content, blocks[name])
                continue
            is_block = isinstance(value, list) and bool(value) and all(
                isinstance(item, dict) and item.get("__is_block__") for item in value)
            present.add(key)
            if schema.get("open"):
                continue
            if is_block:
                if key not in blocks:
                    hint = " (it is an argument: write `= ...`)" if key in arguments else ""
                    self.report(where, f"unsupported block {key!r}{hint}")
                    continue
                for item in value:
                    self.body(f"{where}.{key}", item, blocks[key])
            elif key not in arguments:
                hint = " (it is a block: write `" + key + " { ... }`)" if key in blocks else ""
                self.report(where, f"unsupported argument {key!r}{hint}")
        if schema.get("open"):
            return
        for name, required in arguments.items():
            if required and name not in present:
                self.report(where, f"missing required argument {name!r}")
        for name, block in blocks.items():
            if block["required"] and name not in present:
                self.report(where, f"missing required block {name!r}")

    def module(self, module: Module, modules: dict[Path, Module]) -> None:
        variables, locals_ = module.variables, module.locals
        resources, data_sources = module.declared("resource"), module.declared("data")
        calls = module.module_calls
        rel = module.path.relative_to(TERRAFORM.parent) if module.path.is_relative_to(TERRAFORM.parent) else module.path

        for file_name, entry in module.blocks("provider"):
            for name, body in entry.items():
                if unquote(name) == "google":
                    self.body(f"{rel}/{file_name}: provider google", body, self.schema["provider_config"], {"alias"})
                elif unquote(name) != "google-beta":
                    self.report(f"{rel}/{file_name}", f"provider {unquote(name)!r} has no vendored schema")

        for kind, known, meta in (("resource", self.resource_types, RESOURCE_META),
                                  ("data", self.data_types, DATA_META)):
            schemas = self.schema["resources" if kind == "resource" else "data_sources"]
            for file_name, entry in module.blocks(kind):
                for type_label, named in entry.items():
                    type_name = unquote(type_label)
                    for label, body in named.items():
                        where = f"{rel}/{file_name}: {'data.' if kind == 'data' else ''}{type_name}.{unquote(label)}"
                        if kind == "data" and type_name in BUILTIN_DATA:
                            unknown = set(body) - BUILTIN_DATA[type_name]["arguments"] - meta
                            for key in sorted(k for k in unknown if not k.startswith("__")):
                                self.report(where, f"unsupported argument {key!r}")
                        elif type_name not in known:
                            self.report(where, f"{type_name} is not a {kind} type of "
                                               f"{self.schema['provider']} {self.schema['provider_version']}")
                        elif type_name not in schemas:
                            self.report(where, f"{type_name} is not vendored: run {self.schema['regenerate']}")
                        else:
                            self.body(where, body, schemas[type_name], meta)

        for name, body in calls.items():
            where = f"{rel}: module.{name}"
            target = modules.get((module.path / unquote(body.get("source", '""'))).resolve())
            if target is None:
                self.report(where, f"source {body.get('source')} is not a module of this tree")
                continue
            wanted = target.variables
            given = {key for key in body if not key.startswith("__") and key not in MODULE_META}
            for key in sorted(given - set(wanted)):
                self.report(where, f"the module has no variable {key!r}")
            for key in sorted(k for k, has_default in wanted.items() if not has_default and k not in given):
                self.report(where, f"missing required module input {key!r}")

        for file_name, parsed in module.files.items():
            where = f"{rel}/{file_name}"
            for expression in expressions(parsed):
                self.references(where, collapse_indexes(expression), module, modules, variables, locals_,
                                resources, data_sources, calls)

    def references(self, where: str, expression: str, module: Module, modules: dict[Path, Module],
                   variables: dict[str, bool], locals_: set[str], resources: set[tuple[str, str]],
                   data_sources: set[tuple[str, str]], calls: dict[str, dict[str, Any]]) -> None:
        for match in VAR_REF.finditer(expression):
            if match.group(1) not in variables:
                self.report(where, f"reference to undeclared variable var.{match.group(1)}")
        for match in LOCAL_REF.finditer(expression):
            if match.group(1) not in locals_:
                self.report(where, f"reference to undeclared local value local.{match.group(1)}")
        for match in MODULE_REF.finditer(expression):
            name, output = match.groups()
            if name not in calls:
                self.report(where, f"reference to undeclared module module.{name}")
                continue
            target = modules.get((module.path / unquote(calls[name].get("source", '""'))).resolve())
            if output and target is not None and output not in target.outputs:
                self.report(where, f"module.{name}.{output}: the module has no output {output!r}")
        for match in DATA_REF.finditer(expression):
            type_name, name, attribute = match.groups()
            ref = f"data.{type_name}.{name}" + (f".{attribute}" if attribute else "")
            if (type_name, name) not in data_sources:
                self.report(where, f"reference to undeclared data source data.{type_name}.{name}")
            elif attribute:
                readable = (BUILTIN_DATA[type_name]["attributes"] if type_name in BUILTIN_DATA
                            else self.schema["data_sources"].get(type_name, {}).get("attributes"))
                if readable is not None and attribute not in readable:
                    self.report(where, f"{ref}: data source {type_name} has no attribute {attribute!r}")
        for match in RESOURCE_REF.finditer(expression):
            type_name, name, attribute = match.groups()
            ref = f"{type_name}.{name}" + (f".{attribute}" if attribute else "")
            if (type_name, name) not in resources:
                self.report(where, f"reference to undeclared resource {type_name}.{name}")
            elif attribute:
                readable = self.schema["resources"].get(type_name, {}).get("attributes")
                if readable is not None and attribute not in readable:
                    self.report(where, f"{ref}: resource {type_name} has no attribute {attribute!r}")


def check(files: dict[Path, str], schema: dict[str, Any] | None = None) -> list[str]:
    """Every problem `terraform validate` would raise that the schema lets us see, one line each."""
    modules = read_modules(files)
    checker = Checker(schema or load_schema())
    for module in modules.values():
        checker.module(module, {path.resolve(): m for path, m in modules.items()})
    return checker.problems


# ---------------------------------------------------------------- version constraints


def version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.strip().split("."))


def satisfies(version: str, constraints: str) -> bool:
    """Terraform's version constraint syntax (`~> 6.0`, `>= 1.5, < 2`), for plain x.y.z versions."""
    have = version_tuple(version)
    for constraint in constraints.split(","):
        match = re.fullmatch(r"\s*(~>|>=|<=|!=|>|<|=)?\s*([\d.]+)\s*", constraint)
        assert match, f"cannot read version constraint {constraint!r}"
        op, wanted_text = match.group(1) or "=", match.group(2)
        wanted = version_tuple(wanted_text)
        padded = have[:len(wanted)] if op != "~>" else have
        if op == "~>":
            upper = (*wanted[:-2], wanted[-2] + 1) if len(wanted) > 1 else (wanted[0] + 1,)
            ok = have >= wanted and have[:len(upper)] < upper
        else:
            ok = {"=": padded == wanted, "!=": padded != wanted, ">": have > wanted, ">=": have >= wanted,
                  "<": have < wanted, "<=": have <= wanted}[op]
        if not ok:
            return False
    return True


def provider_pins(files: dict[Path, str]) -> dict[Path, tuple[str, str]]:
    """File -> (source, version constraint) of the google provider in each required_providers."""
    pins: dict[Path, tuple[str, str]] = {}
    for path, text in files.items():
        for terraform in parse(text).get("terraform", []):
            for required in terraform.get("required_providers", []):
                if "google" in required:
                    pin = required["google"]
                    pins[path] = (unquote(pin["source"]), unquote(pin["version"]))
    return pins


# ---------------------------------------------------------------- tests: the real tree


def test_the_whole_tree_validates_against_the_pinned_provider_schema():
    problems = check(tree_files())
    assert problems == [], "\n".join(problems)


def test_the_vendored_schema_is_the_pinned_provider_version_and_the_locked_one():
    schema = load_schema()
    pins = provider_pins(tree_files())
    assert pins, "no required_providers google pin found"
    for path, (source, constraint) in pins.items():
        assert f"registry.terraform.io/{source}" == schema["provider"], path
        assert satisfies(schema["provider_version"], constraint), (
            f"{path.relative_to(ROOT)} pins google {constraint}, the vendored schema is {schema['provider_version']}")
    lock = hcl2.loads(LOCK_FILE.read_text(encoding="utf-8"))
    locked = {unquote(name): body for entry in lock["provider"] for name, body in entry.items()}
    google = locked[schema["provider"]]
    assert unquote(google["version"]) == schema["provider_version"]
    assert {unquote(google["constraints"])} == {constraint for _, constraint in pins.values()}
    hashes = [unquote(h) for h in google["hashes"]]
    assert hashes and all(re.fullmatch(r"(h1:[A-Za-z0-9+/]{43}=|zh:[0-9a-f]{64})", h) for h in hashes), hashes


def root_modules() -> list[Path]:
    """Folders `terraform init` runs in: those with a backend (the shared topology and each service)."""
    return sorted(path.parent for path, text in tree_files().items() if "backend" in str(parse(text).get("terraform")))


def test_every_root_module_commits_the_same_lock_file():
    roots = root_modules()
    assert TERRAFORM in roots and len(roots) > 1
    expected = LOCK_FILE.read_text(encoding="utf-8")
    for root in roots:
        lock = root / ".terraform.lock.hcl"
        assert lock.exists(), f"{lock.relative_to(ROOT)} is missing: copy {LOCK_FILE.relative_to(ROOT)}"
        assert lock.read_text(encoding="utf-8") == expected, f"{lock.relative_to(ROOT)} differs from the root's"


# The predictor is a Vertex AI serving image only: built by Cloud Build, never a Cloud Run service.
VERTEX_SERVED = {"predictor"}
# Cloud Run services that hear no event, hence not in the topology (builds.tf lists them too).
OUTSIDE_TOPOLOGY = {"dashboard"}


def test_each_service_has_its_build_and_each_cloud_run_service_its_root_module():
    services = set(json.loads(TFVARS.read_text(encoding="utf-8"))["services"]) | VERTEX_SERVED | OUTSIDE_TOPOLOGY
    builds = {path.stem for path in (ROOT / "deploy" / "cloudbuild").glob("*.yaml")}
    roots = {path.name for path in root_modules() if path != TERRAFORM}
    assert builds == services
    assert roots == services - VERTEX_SERVED
    assert {path.name for path in (ROOT / "services").iterdir() if (path / "Dockerfile").exists()} == services


def recorded_metric_labels() -> dict[str, set[str]]:
    """Metric name -> label keys of every `<sink>.record("<name>", value, {literal labels})` in the code."""
    found: dict[str, set[str]] = {}
    for path in [*(ROOT / "shared").rglob("*.py"), *(ROOT / "services").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "record"
                    and len(node.args) == 3 and isinstance(node.args[0], ast.Constant)
                    and isinstance(node.args[2], ast.Dict)):
                keys = {str(k.value) for k in node.args[2].keys if isinstance(k, ast.Constant)}
                found.setdefault(str(node.args[0].value), set()).update(keys)
    return found


def test_the_declared_metric_descriptors_carry_exactly_the_labels_the_code_records():
    # Cloud Monitoring refuses a point with a label its descriptor does not declare.
    alerts = parse((TERRAFORM / "alerts.tf").read_text(encoding="utf-8"))
    metrics = next(entry["alerted_metrics"] for entry in alerts["locals"] if "alerted_metrics" in entry)
    declared = {name: {unquote(label) for label in metric["labels"]} for name, metric in metrics.items()}
    recorded = recorded_metric_labels()
    assert declared and set(declared) <= set(recorded), (declared, recorded)
    for name, labels in declared.items():
        assert labels == recorded[name], f"{name}: declared {sorted(labels)}, recorded {sorted(recorded[name])}"


def test_the_topology_tfvars_only_set_declared_variables():
    root = read_modules({p: t for p, t in tree_files().items() if p.parent == TERRAFORM})[TERRAFORM]
    tfvars = json.loads(TFVARS.read_text(encoding="utf-8"))
    assert set(tfvars) - set(root.variables) == set()


def test_the_schema_check_would_have_caught_the_registry_uri_output():
    # google 6.x has no registry_uri on google_artifact_registry_repository (it came with 7.x).
    schema = load_schema()
    assert "registry_uri" not in schema["resources"]["google_artifact_registry_repository"]["attributes"]


# ---------------------------------------------------------------- tests: the checker fails where it must


def mutated(path: Path, old: str, new: str) -> dict[Path, str]:
    files = tree_files()
    assert files[path].count(old) >= 1, f"{old!r} not in {path}"
    files[path] = files[path].replace(old, new, 1)
    return files


SERVICE_MODULE = TERRAFORM / "modules" / "service" / "main.tf"
ROOT_OUTPUTS = TERRAFORM / "outputs.tf"
ROOT_MAIN = TERRAFORM / "main.tf"


def test_a_broken_attribute_name_fails_the_check():
    files = mutated(SERVICE_MODULE, "google_cloud_run_v2_service.service.uri",
                    "google_cloud_run_v2_service.service.url")
    problems = check(files)
    assert any("google_cloud_run_v2_service.service.url: resource google_cloud_run_v2_service has no attribute "
               "'url'" in p for p in problems), problems


def test_the_old_registry_uri_output_fails_the_check():
    files = tree_files()
    files[ROOT_OUTPUTS] += ('\noutput "broken" {\n'
                            '  value = google_artifact_registry_repository.images.registry_uri\n}\n')
    problems = check(files)
    assert [p for p in problems if "registry_uri" in p] == [
        "terraform/outputs.tf: google_artifact_registry_repository.images.registry_uri: resource "
        "google_artifact_registry_repository has no attribute 'registry_uri'"]


def test_a_misspelt_argument_in_a_nested_block_fails_the_check():
    files = mutated(SERVICE_MODULE, "service_account_email = google_service_account.invoker.email",
                    "service_account = google_service_account.invoker.email")
    problems = check(files)
    assert "terraform/modules/service/main.tf: google_pubsub_subscription.push.push_config.oidc_token: " \
           "unsupported argument 'service_account'" in problems, problems
    assert "terraform/modules/service/main.tf: google_pubsub_subscription.push.push_config.oidc_token: " \
           "missing required argument 'service_account_email'" in problems, problems


def test_a_block_written_as_an_argument_and_an_unknown_type_fail_the_check():
    files = mutated(ROOT_MAIN, "  versioning {\n    enabled = true\n  }", "  versioning = { enabled = true }")
    files[ROOT_MAIN] += '\nresource "google_pubsub_topik" "typo" {\n  name = "x"\n}\n'
    problems = check(files)
    assert "terraform/main.tf: google_storage_bucket.main: unsupported argument 'versioning' " \
           "(it is a block: write `versioning { ... }`)" in problems, problems
    assert any(p.startswith("terraform/main.tf: google_pubsub_topik.typo: google_pubsub_topik is not a resource type")
               for p in problems), problems


def test_undeclared_variables_and_wrong_module_inputs_fail_the_check():
    deployer = TERRAFORM / "services" / "deployer" / "main.tf"
    files = mutated(deployer, "image          = var.image", "image_uri      = var.imagee")
    problems = check(files)
    assert "terraform/services/deployer/main.tf: reference to undeclared variable var.imagee" in problems
    assert "terraform/services/deployer: module.deployer: the module has no variable 'image_uri'" in problems
    assert "terraform/services/deployer: module.deployer: missing required module input 'image'" in problems


def test_a_missing_module_output_fails_the_check():
    deployer = TERRAFORM / "services" / "deployer" / "main.tf"
    files = mutated(deployer, "module.deployer.url", "module.deployer.endpoint")
    problems = check(files)
    assert "terraform/services/deployer/main.tf: module.deployer.endpoint: the module has no output 'endpoint'" \
        in problems, problems


@pytest.mark.parametrize(("version", "constraint", "ok"), [
    ("6.50.0", "~> 6.0", True), ("7.0.0", "~> 6.0", False), ("6.50.0", "~> 6.50.0", True),
    ("6.51.0", "~> 6.50.0", False), ("1.11.4", ">= 1.5", True), ("6.0.0", ">= 5, < 6", False),
])
def test_version_constraints_read_as_terraform_reads_them(version, constraint, ok):
    assert satisfies(version, constraint) is ok
