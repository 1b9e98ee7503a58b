"""The part of kustomize the project's kustomizations use: resources (files and directories),
components, namespace, images and JSON 6902 patches with a kind/name target (a patch that renames
a ServiceAccount renames it where the pods and bindings name it, as kustomize's name references
do). Anything else in a kustomization fails loudly. `kubectl kustomize`, where installed, is compared against it."""
import copy
from pathlib import Path

import yaml

KNOWN = {"apiVersion", "kind", "namespace", "resources", "components", "images", "patches"}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
                  "BucketEncryptionPolicy"}


def build(directory):
    directory = Path(directory)
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(kustomization) - KNOWN
    assert not unknown, f"{directory}/kustomization.yaml uses {sorted(unknown)}, which mini_kustomize does not render"
    objects = []
    for entry in kustomization.get("resources", []):
        path = directory / entry
        if path.is_dir():
            objects.extend(build(path))
        else:
            objects.extend(o for o in yaml.safe_load_all(path.read_text()) if o)
    for entry in kustomization.get("components", []):
        component = yaml.safe_load((directory / entry / "kustomization.yaml").read_text())
        assert component["kind"] == "Component", f"{entry} is not a kustomize Component"
        objects.extend(build_component(directory / entry, component))
        objects = patch_all(objects, directory / entry, component.get("patches", []))
    if "namespace" in kustomization:
        for obj in objects:
            if obj["kind"] not in CLUSTER_SCOPED:
                obj["metadata"]["namespace"] = kustomization["namespace"]
            for subject in obj.get("subjects", []) if obj["kind"] in ("RoleBinding", "ClusterRoleBinding") else []:
                if subject.get("kind") == "ServiceAccount":
                    subject["namespace"] = kustomization["namespace"]
    for image in kustomization.get("images", []):
        for obj in objects:
            for container in pod_containers(obj):
                name = container["image"].split("@")[0].rsplit(":", 1)[0]
                if name == image["name"]:
                    reference = image.get("newName", name)
                    if "digest" in image:
                        container["image"] = f"{reference}@{image['digest']}"
                    else:
                        container["image"] = f"{reference}:{image['newTag']}" if "newTag" in image else reference
    return patch_all(objects, directory, kustomization.get("patches", []))


def rename_service_account_references(objects, old, new):
    """What kustomize's name reference transformer does when a patch renames a ServiceAccount."""
    for obj in objects:
        spec = obj.get("spec", {}).get("template", {}).get("spec", {})
        if spec.get("serviceAccountName") == old:
            spec["serviceAccountName"] = new
        if obj["kind"] in ("RoleBinding", "ClusterRoleBinding"):
            for subject in obj.get("subjects", []):
                if subject.get("kind") == "ServiceAccount" and subject.get("name") == old:
                    subject["name"] = new


def build_component(directory, component):
    objects = []
    for entry in component.get("resources", []):
        objects.extend(o for o in yaml.safe_load_all((directory / entry).read_text()) if o)
    return objects


def pod_containers(obj):
    spec = obj.get("spec", {}).get("template", {}).get("spec", {})
    return spec.get("containers", []) + spec.get("initContainers", [])


def patch_all(objects, directory, patches):
    for patch in patches:
        target = patch["target"]
        ops = yaml.safe_load(patch["patch"]) if "patch" in patch else yaml.safe_load((directory / patch["path"]).read_text())
        assert isinstance(ops, list), "mini_kustomize applies JSON 6902 patches (a list of operations) only"
        matched = [o for o in objects if o["kind"] == target["kind"] and o["metadata"]["name"] == target.get("name", o["metadata"]["name"])]
        assert matched, f"patch target {target} matches nothing"
        for obj in matched:
            before = obj["metadata"]["name"]
            for op in ops:
                apply_op(obj, op)
            if obj["kind"] == "ServiceAccount" and obj["metadata"]["name"] != before:
                rename_service_account_references(objects, before, obj["metadata"]["name"])
    return objects


def apply_op(obj, op):
    *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].lstrip("/").split("/")]
    node = obj
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if op["op"] in ("add", "replace"):
        value = copy.deepcopy(op["value"])
        if isinstance(node, list):
            if last == "-":
                node.append(value)
            elif op["op"] == "add":
                node.insert(int(last), value)
            else:
                node[int(last)] = value
        else:
            node[last] = value
    elif op["op"] == "remove":
        del node[int(last) if isinstance(node, list) else last]
    else:
        raise AssertionError(f"JSON patch op {op['op']} is not supported")
