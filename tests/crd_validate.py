"""Validates custom resources against the real CustomResourceDefinitions of
their projects (CloudNativePG, Gateway API), offline, the way the API server
checks them with strict field validation: the version's openAPIV3Schema as
JSON Schema, and no field the schema does not name (the API server would
drop it silently, or refuse it under `kubectl apply --validate=strict`).

What a schema cannot express is not checked here: defaults, the CEL rules
under x-kubernetes-validations, and the operators' admission webhooks.

    crd_validate.py CRD_DIR... -- MANIFEST...

prints one line per document: `passed <kind>/<name>`, `failed <kind>/<name>:
<reasons>`, `no-crd <kind>/<name>` for a custom kind of a group none of the
CRDs defines, or `builtin <kind>/<name>` for Kubernetes' own kinds (checked by
kubernetes-validate instead). Exits 1 if any document failed.
"""

import sys

import jsonschema
import yaml

# libyaml's loader when PyYAML has it: the CRDs are large.
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def strict(schema):
    """Refuses properties a schema does not name, unless it keeps unknown fields."""
    if isinstance(schema, dict):
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
        for value in schema.values():
            strict(value)
    elif isinstance(schema, list):
        for value in schema:
            strict(value)
    return schema


def load_crds(folders):
    """(group/version, kind) -> JSON Schema, and the groups the CRDs define."""
    import pathlib

    schemas, groups = {}, set()
    for folder in folders:
        for path in sorted(pathlib.Path(folder).glob("*.yaml")):
            for crd in yaml.load_all(path.read_text(), Loader=LOADER):
                if not crd or crd.get("kind") != "CustomResourceDefinition":
                    continue
                group = crd["spec"]["group"]
                groups.add(group)
                kind = crd["spec"]["names"]["kind"]
                for version in crd["spec"]["versions"]:
                    schema = strict(version["schema"]["openAPIV3Schema"])
                    schemas[(f"{group}/{version['name']}", kind)] = schema
    return schemas, groups


def main(argv):
    split = argv.index("--")
    schemas, groups = load_crds(argv[:split])
    failed = False
    for path in argv[split + 1 :]:
        with open(path) as file:
            documents = [d for d in yaml.load_all(file, Loader=LOADER) if d]
        for document in documents:
            kind = document.get("kind", "?")
            name = f"{kind}/{document.get('metadata', {}).get('name', '?')}"
            api_version = document.get("apiVersion", "")
            schema = schemas.get((api_version, kind))
            if schema is None:
                group = api_version.rpartition("/")[0]
                custom = "." in group and not group.endswith(".k8s.io")
                if group in groups:
                    print(f"failed {name}: no CRD of {api_version} defines {kind}")
                    failed = True
                else:
                    print(f"{'no-crd' if custom else 'builtin'} {name}")
                continue
            validator = jsonschema.Draft7Validator(schema)
            errors = sorted(validator.iter_errors(document), key=lambda e: list(e.path))
            if errors:
                failed = True
                reasons = "; ".join(
                    f"{'.'.join(str(p) for p in e.path) or '(top)'}: {e.message}"
                    for e in errors
                )
                print(f"failed {name}: {reasons}")
            else:
                print(f"passed {name}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
