"""A minimal in-memory Kubernetes API server, enough for Helm to install a chart into it.

Helm has no client-only render in the PyPI binding (helm-sdkpy), so the chart is rendered by a
real `helm install` against this server: discovery, create/get/list/update of any object, and
CustomResourceDefinitions reported Established. What Helm sent is kept in `objects` for the
checks; nothing here validates schemas (kubernetes-validate does that on the rendered manifest).
"""
import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

# (group, version, plural, kind, namespaced)
RESOURCES = [
    ("", "v1", "namespaces", "Namespace", False),
    ("", "v1", "serviceaccounts", "ServiceAccount", True),
    ("", "v1", "services", "Service", True),
    ("", "v1", "secrets", "Secret", True),
    ("", "v1", "configmaps", "ConfigMap", True),
    ("", "v1", "pods", "Pod", True),
    ("apps", "v1", "deployments", "Deployment", True),
    ("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False),
    ("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False),
    ("rbac.authorization.k8s.io", "v1", "roles", "Role", True),
    ("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True),
    ("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", True),
    ("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", True),
    ("coordination.k8s.io", "v1", "leases", "Lease", True),
    ("events.k8s.io", "v1", "events", "Event", True),
    ("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", False),
    ("monitoring.coreos.com", "v1", "servicemonitors", "ServiceMonitor", True),
    ("monitoring.coreos.com", "v1", "prometheusrules", "PrometheusRule", True),
    ("oss.encryption.dev", "v1alpha1", "bucketencryptions", "BucketEncryption", True),
    ("oss.encryption.dev", "v1alpha1", "bucketencryptionpolicies", "BucketEncryptionPolicy", False),
    ("oss.encryption.dev", "v1alpha1", "bucketencryptiongrants", "BucketEncryptionGrant", False),
]


def _group_versions():
    seen = {}
    for group, version, *_ in RESOURCES:
        seen.setdefault(group, []).append(version)
    return {g: sorted(set(v)) for g, v in seen.items()}


class FakeApiServer:
    """Serves on 127.0.0.1 (a free port) until `close`."""

    def __init__(self, version="v1.33.0", namespaces=()):
        self.version = version
        self.objects = {}  # path of the object -> object
        self.lock = threading.Lock()
        for name in namespaces:
            self.put_namespace(name, {})
        handler = type("Handler", (_Handler,), {"api": self})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def put_namespace(self, name, labels):
        self.objects[f"/api/v1/namespaces/{name}"] = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "labels": labels, "uid": str(uuid.uuid4()), "resourceVersion": "1"},
        }

    def kubeconfig(self, path):
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": {"token": "fake"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
            "current-context": "fake",
        }
        with open(path, "w") as f:
            json.dump(config, f)

    def created(self):
        """Every object Helm created, except its own release records."""
        return [
            o for o in self.objects.values()
            if not (o.get("kind") == "Secret" and o.get("type") == "helm.sh/release.v1")
        ]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class _Handler(BaseHTTPRequestHandler):
    api = None

    def log_message(self, *args):
        pass

    def _reply(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _status(self, code, reason, message):
        self._reply(code, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                           "message": message, "reason": reason, "code": code})

    def _body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"{}")

    def _discovery(self, path):
        versions = _group_versions()
        if path == "/version":
            major, minor = self.api.version.lstrip("v").split(".")[:2]
            return {"major": major, "minor": minor, "gitVersion": self.api.version,
                    "platform": "linux/amd64", "goVersion": "go1.24"}
        if path == "/api":
            return {"kind": "APIVersions", "versions": ["v1"],
                    "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}
        if path == "/apis":
            groups = []
            for group, vs in versions.items():
                if group:
                    gv = [{"groupVersion": f"{group}/{v}", "version": v} for v in vs]
                    groups.append({"name": group, "versions": gv, "preferredVersion": gv[0]})
            return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}
        for group, vs in versions.items():
            for v in vs:
                prefix = f"/api/{v}" if not group else f"/apis/{group}/{v}"
                if path == prefix:
                    return {
                        "kind": "APIResourceList", "apiVersion": "v1",
                        "groupVersion": f"{group}/{v}" if group else v,
                        "resources": [
                            {"name": plural, "singularName": kind.lower(), "namespaced": ns, "kind": kind,
                             "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]}
                            for g, ver, plural, kind, ns in RESOURCES if g == group and ver == v
                        ],
                    }
        return None

    def do_GET(self):
        path = urlsplit(self.path).path.rstrip("/") or "/"
        found = self._discovery(path)
        if found is not None:
            return self._reply(200, found)
        if path.startswith("/openapi"):
            return self._status(404, "NotFound", "no OpenAPI here")
        with self.api.lock:
            if path in self.api.objects:
                return self._reply(200, self.api.objects[path])
            items = [o for p, o in self.api.objects.items() if p.rsplit("/", 1)[0] == path]
            if self._is_collection(path):
                return self._reply(200, {"kind": "List", "apiVersion": "v1",
                                         "metadata": {"resourceVersion": "1"}, "items": items})
        self._status(404, "NotFound", f"{path} not found")

    @staticmethod
    def _is_collection(path):
        last = path.rsplit("/", 1)[-1]
        return any(last == plural for *_, plural, _kind, _ns in RESOURCES)

    def do_POST(self):
        path = urlsplit(self.path).path.rstrip("/")
        obj = self._body()
        meta = obj.setdefault("metadata", {})
        name = meta.get("name")
        if not name:
            return self._status(422, "Invalid", "metadata.name is required")
        key = f"{path}/{name}"
        with self.api.lock:
            if key in self.api.objects:
                return self._status(409, "AlreadyExists", f"{key} already exists")
            meta.update(uid=str(uuid.uuid4()), resourceVersion="1", creationTimestamp="2026-01-01T00:00:00Z")
            if obj.get("kind") == "CustomResourceDefinition":
                obj["status"] = {"conditions": [
                    {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": ""},
                    {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": ""},
                ], "acceptedNames": obj["spec"]["names"], "storedVersions": [obj["spec"]["versions"][0]["name"]]}
            self.api.objects[key] = obj
        self._reply(201, obj)

    def do_PUT(self):
        path = urlsplit(self.path).path.rstrip("/")
        obj = self._body()
        with self.api.lock:
            self.api.objects[path] = obj
        self._reply(200, obj)

    def do_PATCH(self):
        path = urlsplit(self.path).path.rstrip("/")
        with self.api.lock:
            if path not in self.api.objects:
                return self._status(404, "NotFound", f"{path} not found")
            return self._reply(200, self.api.objects[path])

    def do_DELETE(self):
        path = urlsplit(self.path).path.rstrip("/")
        with self.api.lock:
            obj = self.api.objects.pop(path, None)
        if obj is None:
            return self._status(404, "NotFound", f"{path} not found")
        self._reply(200, obj)
