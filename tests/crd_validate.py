"""Validates custom resources against the real CustomResourceDefinitions of
their projects (CloudNativePG, Gateway API), offline, as the API server does
on `kubectl apply --validate=strict`:

1. the version's openAPIV3Schema as JSON Schema, with no field the schema
   does not name (the API server would refuse it, or drop it silently);
2. the schema's defaults filled in, then every CEL rule of the schema
   (x-kubernetes-validations) evaluated on the value it sits on (with
   cel-python; rules about updates, which name oldSelf, do not apply to a
   new resource).

Not checked: the operators' admission webhooks, which run in the cluster.

    crd_validate.py CRD_DIR... -- MANIFEST...

prints one line per document: `passed <kind>/<name> (<n> CEL rules)`,
`failed <kind>/<name>: <reasons>`, `no-crd <kind>/<name>` for a custom kind of
a group none of the CRDs defines, or `builtin <kind>/<name>` for Kubernetes'
own kinds (checked by kubernetes-validate instead). A CEL rule cel-python
cannot evaluate fails the document too: nothing is skipped silently. Exits 1
if any document failed.
"""

import copy
import sys

import celpy
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


def with_defaults(schema, value):
    """Fills in the defaults the API server applies before the CEL rules."""
    if isinstance(value, dict):
        for key, sub in schema.get("properties", {}).items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                with_defaults(sub, value[key])
    elif isinstance(value, list) and "items" in schema:
        for item in value:
            with_defaults(schema["items"], item)
    return value


CEL = celpy.Environment()
PROGRAMS = {}  # rule -> compiled program: many rules repeat across list items


def program(rule):
    if rule not in PROGRAMS:
        PROGRAMS[rule] = CEL.program(CEL.compile(rule))
    return PROGRAMS[rule]


def cel_failures(schema, value, path, counted):
    """The reasons the CEL rules on `value` and beneath it refuse it."""
    reasons = []
    for validation in schema.get("x-kubernetes-validations", []):
        rule = validation["rule"]
        if "oldSelf" in rule:
            continue
        counted[0] += 1
        try:
            result = program(rule).evaluate({"self": celpy.json_to_cel(value)})
        except Exception as error:  # a rule cel-python cannot evaluate
            result = error
        if isinstance(result, (Exception, celpy.CELEvalError)):
            reasons.append(f"{path}: CEL rule not evaluated ({result}): {rule}")
        elif not bool(result):
            reasons.append(f"{path}: {validation.get('message', rule)}")
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            sub = properties.get(key, extra if isinstance(extra, dict) else None)
            if sub is not None:
                reasons += cel_failures(sub, item, f"{path}.{key}", counted)
    elif isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            reasons += cel_failures(schema["items"], item, f"{path}[{index}]", counted)
    return reasons


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
            reasons = [
                f"{'.'.join(str(p) for p in e.path) or '(top)'}: {e.message}" for e in errors
            ]
            counted = [0]
            if not reasons:
                defaulted = with_defaults(schema, copy.deepcopy(document))
                reasons = cel_failures(schema, defaulted, kind, counted)
            if reasons:
                failed = True
                print(f"failed {name}: {'; '.join(reasons)}")
            else:
                print(f"passed {name} ({counted[0]} CEL rules)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
