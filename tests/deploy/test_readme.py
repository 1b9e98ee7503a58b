"""The README's install commands, run in a scratch copy of the repository up to where a cluster
or a Docker engine is needed; the commands that need one are checked against what they name
(paths exist and render, images match, the Helm install succeeds with the README's values)."""
import re
import shlex
import subprocess

import pytest

from conftest import ROOT, kustomize, render
from mini_kustomize import build

SECTIONS = ["## Try it on kind or minikube", "## Install in a cluster"]
NEEDS_A_CLUSTER = {"kubectl", "helm", "kind", "docker", "minikube"}


def shell_blocks(section):
    readme = (ROOT / "README.md").read_text()
    body = readme.split(section + "\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", body, re.S)


def commands(block):
    """Each command of a block: continuation lines joined, heredocs kept with their command,
    `&&` chains split, comments dropped."""
    lines, out = block.splitlines(), []
    i = 0
    while i < len(lines):
        line = lines[i]
        while line.endswith("\\"):
            i += 1
            line = line[:-1] + " " + lines[i].strip()
        heredoc = re.search(r"<<'?(\w+)'?", line)
        if heredoc:
            end = lines.index(heredoc.group(1), i + 1)
            out.append("\n".join(lines[i:end + 1]))
            i = end + 1
            continue
        for part in line.split(" && "):
            part = part.split("  #")[0].strip()
            if part and not part.startswith("#"):
                out.append(part)
        i += 1
    return out


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    """A copy of the repository's tracked files (what a clone holds)."""
    copy = tmp_path_factory.mktemp("clone")
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    archive = subprocess.run(["tar", "-cf", "-", "--null", "-T", "-"], cwd=ROOT, input=files, capture_output=True, check=True)
    subprocess.run(["tar", "-xf", "-"], cwd=copy, input=archive.stdout, check=True)
    return copy


def check_needing_a_cluster(argv, scratch, seen):
    """What a command that needs a cluster or Docker names must exist and work offline."""
    tool = argv[0]
    if tool == "docker" and argv[1] == "build":
        assert (scratch / "Dockerfile").exists() and argv[-1] == "."
        seen["built"].add(argv[argv.index("-t") + 1])
    elif tool == "docker" and argv[1] == "push":
        assert argv[2] in seen["built"], f"pushes {argv[2]}, which was not built"
    elif tool == "kind":
        assert argv[1:3] == ["load", "docker-image"] and argv[3] in seen["built"]
        seen["loaded"].add(argv[3])
    elif tool == "kubectl" and "-k" in argv:
        directory = argv[argv.index("-k") + 1]
        objects = build(scratch / directory)
        assert objects, f"{directory} renders nothing"
        images = {c["image"] for o in objects for c in o.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])}
        assert images <= seen["built"] | seen["loaded"], f"{directory} runs {images}, never built: {seen['built']}"
        seen["applied"].extend(objects)
    elif tool == "kubectl" and argv[1] == "wait":
        kinds = {o["kind"] for o in seen["applied"]}
        assert "BucketEncryption" in kinds, "waits on BucketEncryptions before applying any"
    elif tool == "helm" and argv[1] == "install":
        chart = scratch / argv[3]
        assert (chart / "Chart.yaml").exists()
        values = {}
        for flag, value in zip(argv, argv[1:]):
            if flag == "--set":
                key, _, raw = value.partition("=")
                node = values
                *parents, last = key.split(".")
                for part in parents:
                    node = node.setdefault(part, {})
                node[last] = raw
        namespace = argv[argv.index("-n") + 1]
        labels = seen["namespaces"].get(namespace)
        assert labels is not None or "--create-namespace" in argv, f"namespace {namespace} never created"
        installed = render(values, namespace=namespace, namespace_labels=labels)
        image = installed.container()["image"]
        assert image in seen["built"], f"the chart runs {image}, never built"
    elif tool == "kubectl" and argv[1:3] == ["create", "namespace"]:
        seen["namespaces"][argv[3]] = {}
    elif tool == "kubectl" and argv[1:3] == ["label", "namespace"]:
        key, _, value = argv[4].partition("=")
        seen["namespaces"][argv[3]][key] = value


@pytest.mark.parametrize("section", SECTIONS)
def test_the_readme_install_commands_work_as_written(section, scratch):
    seen = {"built": set(), "loaded": set(), "applied": [], "namespaces": {}}
    ran = 0
    for block in shell_blocks(section):
        for command in commands(block):
            argv = shlex.split(command.split("\n")[0].split("<<")[0])
            if argv[0] in NEEDS_A_CLUSTER:
                check_needing_a_cluster(argv, scratch, seen)
                continue
            run = subprocess.run(["bash", "-euo", "pipefail", "-c", command], cwd=scratch, capture_output=True, text=True)
            assert run.returncode == 0, f"{command}\n{run.stderr}"
            ran += 1
    assert seen["applied"] or seen["built"], f"{section}: no command was checked"
    if section == "## Install in a cluster":
        assert ran >= 1, "the local overlay was written"


def test_the_rrsa_trust_policy_names_the_service_accounts_the_installs_create():
    readme = (ROOT / "README.md").read_text()
    [account] = [o for o in build(ROOT / "deploy/base") if o["kind"] == "ServiceAccount"]
    meta = account["metadata"]
    assert f'"oidc:sub": "system:serviceaccount:{meta["namespace"]}:{meta["name"]}"' in readme
    chart = render({})
    [helm_account] = chart.of_kind("ServiceAccount")
    assert helm_account["metadata"]["name"] == "oeo-oss-encryption-operator"
    assert "system:serviceaccount:<release namespace>:<release>-oss-encryption-operator" in readme


def test_the_quickstart_builds_one_profile_and_ci_runs_its_test_command():
    [block] = shell_blocks("## Quickstart (a fresh machine with Rust)")
    main_job, test_command = commands(block)
    # One build profile for both: the main job on the dev profile, which the tests reuse.
    assert main_job == "cargo run -- apply --emulator -f examples/"
    assert test_command == "cargo nextest run --locked"
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert test_command in ci, ".ci/run must run exactly the README's test command"
    readme = (ROOT / "README.md").read_text()
    # `cargo run --release` would build a second, optimised profile; the release build is the
    # documented `cargo build --release` for real use (and the benchmarks').
    assert "cargo run --release" not in readme
    assert "cargo build --release --locked" in readme


def test_the_readme_rrsa_overlay_renames_the_service_account_everywhere(scratch):
    # The README's overlays, written in the scratch clone as its commands write them;
    # kustomize() compares the project's renderer with `kubectl kustomize` where kubectl exists.
    for block in shell_blocks("## Install in a cluster"):
        for command in commands(block):
            if command.startswith("mkdir -p deploy/local"):
                subprocess.run(["bash", "-euo", "pipefail", "-c", command], cwd=scratch, check=True)
    objects = kustomize(scratch / "deploy/local-rrsa")
    [account] = [o for o in objects if o["kind"] == "ServiceAccount"]
    assert account["metadata"]["name"] == "oss-operator"
    assert account["metadata"]["annotations"]["pod-identity.alibabacloud.com/role-name"] == "platform-oss-encryption"
    [deployment] = [o for o in objects if o["kind"] == "Deployment"]
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "oss-operator"
    subjects = [s for o in objects if o["kind"] in ("RoleBinding", "ClusterRoleBinding") for s in o["subjects"]]
    assert subjects and all(s["name"] == "oss-operator" and s["namespace"] == "oss-encryption-operator" for s in subjects)
    [namespace] = [o for o in objects if o["kind"] == "Namespace"]
    assert namespace["metadata"]["labels"]["pod-identity.alibabacloud.com/injection"] == "on"
    readme = (ROOT / "README.md").read_text()
    assert f"oidc:sub: system:serviceaccount:{account['metadata']['namespace']}:oss-operator" in readme


def test_the_readme_network_policy_overlay_admits_the_prometheus_it_names(scratch):
    for block in shell_blocks("## Install in a cluster"):
        for command in commands(block):
            if command.startswith("mkdir -p deploy/local"):
                subprocess.run(["bash", "-euo", "pipefail", "-c", command], cwd=scratch, check=True)
    [policy] = [o for o in kustomize(scratch / "deploy/local-secured") if o["kind"] == "NetworkPolicy"]
    assert policy["spec"]["ingress"][0]["from"] == [{
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "observability"}},
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
    }]
