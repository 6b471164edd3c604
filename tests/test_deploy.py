"""deploy/ and the Docker build: the Kubernetes manifests validate against the Kubernetes schemas
(kubernetes-validate, offline), their settings and camera list load as a pod loads them, the
Compose file, nginx and Prometheus configs agree on the workers, and the Docker build context
holds what the Dockerfile copies and little else. (tests/test_scaling.py runs the configs.)"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from conftest import ROOT
from streamer.config import load_settings
from streamer.shards import camera_map
from streamer.users import read_users

DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
CONTEXT_LIMIT = 5 * 1024 * 1024
FILES = ("STREAMER_CONFIG", "STREAMER_AUTH__USERS_FILE")  # the variables that name a mounted file


def kustomization() -> dict:
    return yaml.safe_load((K8S / "kustomization.yaml").read_text())


def manifests() -> list[dict]:
    return [doc for name in kustomization()["resources"] for doc in yaml.safe_load_all((K8S / name).read_text()) if doc]


def manifest(kind: str, name: str) -> dict:
    (found,) = [doc for doc in manifests() if doc["kind"] == kind and doc["metadata"]["name"] == name]
    return found


def generated_files(section: str, name: str) -> dict[str, Path]:
    """The files from which the kustomization's ``section`` (configMapGenerator, secretGenerator)
    makes ``name``, by the key each becomes."""
    (generator,) = [g for g in kustomization()[section] if g["name"] == name]
    return {Path(f).name: K8S / f for f in generator["files"]}


def generated_from(section: str, name: str, key: str) -> Path:
    return generated_files(section, name)[key]


def mounted_file(workload: dict, path: str) -> Path:
    """The generator's file that the cluster mounts at ``path`` in the workload's container,
    through a projected volume of ConfigMaps and Secrets."""
    spec = workload["spec"]["template"]["spec"]
    folder, key = path.rsplit("/", 1)
    (mount,) = [m for m in spec["containers"][0]["volumeMounts"] if m["mountPath"] == folder]
    (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    sections = {"configMap": "configMapGenerator", "secret": "secretGenerator"}
    (found,) = [
        files[key]
        for source in volume["projected"]["sources"]
        for kind, ref in source.items()
        if key in (files := generated_files(sections[kind], ref["name"]))
    ]
    return found


def container_env(workload: dict) -> dict:
    """The variables of the workload's container; a Secret's is read from its generator's file."""
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    env = {}
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
        else:
            ref = var["valueFrom"]["secretKeyRef"]
            env[var["name"]] = generated_from("secretGenerator", ref["name"], ref["key"]).read_text()
    return env


@pytest.mark.parametrize("version", ["1.29.0", "1.37.0"])
def test_the_kubernetes_manifests_validate(version: str):
    documents = manifests()
    assert {doc["kind"] for doc in documents} >= {
        "Deployment", "HorizontalPodAutoscaler", "StatefulSet", "Service", "PodDisruptionBudget"
    }
    for doc in documents:  # strict: an unknown or misspelt field fails too
        kubernetes_validate.validate(doc, version, strict=True)


def test_a_pod_loads_its_settings_as_the_cluster_gives_them(monkeypatch: pytest.MonkeyPatch):
    shards = manifest("StatefulSet", "streamer-cameras")
    service = manifest("Service", shards["spec"]["serviceName"])
    assert service["spec"]["clusterIP"] == "None"  # headless: one DNS name per pod
    replicas = shards["spec"]["replicas"]
    env = container_env(shards)
    assert env["STREAMER_SERVER__SHARD"] == f"ordinal/{replicas}"
    # The ConfigMap and the users Secret are mounted where STREAMER_CONFIG and STREAMER_AUTH__USERS_FILE
    # point; here they are read from their source files.
    for variable in FILES:
        monkeypatch.setenv(variable, str(mounted_file(shards, env.pop(variable))))
    for ordinal in range(replicas):
        pod = f"{shards['metadata']['name']}-{ordinal}"
        monkeypatch.setattr(socket, "gethostname", lambda: pod)  # a StatefulSet pod's host name is its name
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        settings = load_settings()
        assert read_users(Path(settings.auth.users_file)).users == (), "the shipped users file has no users"
        assert settings.server.shards == (ordinal, replicas)
        assert settings.server.shard_url.format(shard=ordinal).startswith(f"http://{pod}.{service['metadata']['name']}:")
        assert any(placement.local for placement in camera_map(settings)), f"{pod} runs none of the example cameras"

    for name in env:
        monkeypatch.delenv(name)
    stills = manifest("Deployment", "streamer-stills")
    env = container_env(stills)
    for variable in FILES:
        monkeypatch.setenv(variable, str(mounted_file(stills, env.pop(variable))))
    assert env == {"STREAMER_RTSP__ENABLED": "false"}  # no cameras, so no RTSP feeds
    monkeypatch.setenv("STREAMER_RTSP__ENABLED", "false")
    settings = load_settings()
    assert read_users(Path(settings.auth.users_file)).users == () and not settings.rtsp.enabled
    (container,) = stills["spec"]["template"]["spec"]["containers"]
    assert "--no-cameras" in container["args"]
    # One worker thread per CPU the pod asks for: a container sees every core of its node.
    assert str(settings.server.workers) == container["resources"]["requests"]["cpu"]


def test_the_workloads_probe_and_are_scraped():
    for kind, name in [("Deployment", "streamer-stills"), ("StatefulSet", "streamer-cameras")]:
        template = manifest(kind, name)["spec"]["template"]
        (container,) = template["spec"]["containers"]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert template["metadata"]["annotations"]["prometheus.io/path"] == "/metrics"
        (volume,) = template["spec"]["volumes"]
        assert volume["projected"]["sources"] == [
            {"configMap": {"name": "streamer-settings"}}, {"secret": {"name": "streamer-users"}}
        ]
    assert manifest("HorizontalPodAutoscaler", "streamer-stills")["spec"]["scaleTargetRef"]["name"] == "streamer-stills"


def test_compose_nginx_and_prometheus_name_the_same_workers():
    services = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    stills = sorted(name for name, s in services.items() if s.get("command", [])[-1:] == ["--no-cameras"])
    shards = {
        name: s["command"][s["command"].index("--shard") + 1] for name, s in services.items() if "--shard" in s.get("command", [])
    }
    assert len(stills) >= 2 and len(shards) >= 2
    counts = {shard.split("/")[1] for shard in shards.values()}
    assert counts == {str(len(shards))}, "every camera worker counts the same shards"
    assert sorted(int(shard.split("/")[0]) for shard in shards.values()) == list(range(len(shards)))

    upstreams = re.findall(r"^\s*server (\S+):8000 ", (DEPLOY / "nginx" / "streamer.conf").read_text(), flags=re.M)
    assert sorted(upstreams) == stills
    jobs = {
        job["job_name"]: sorted(t for c in job["static_configs"] for t in c["targets"])
        for job in yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())["scrape_configs"]
    }
    assert jobs == {
        "streamer-stills": [f"{s}:8000" for s in stills], "streamer-cameras": sorted(f"{s}:8000" for s in shards)
    }


def test_compose_workers_read_the_users_and_believe_only_nginx():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    nginx = services["nginx"]["networks"]["default"]["ipv4_address"]
    (subnet,) = compose["networks"]["default"]["ipam"]["config"]
    assert ipaddress.ip_address(nginx) in ipaddress.ip_network(subnet["subnet"])
    workers = {name: s for name, s in services.items() if s.get("command", [""])[0] == "streamer"}
    assert len(workers) >= 4
    for name, service in workers.items():
        env = service["environment"]
        mounts = {target: source for source, target in (v.removesuffix(":ro").split(":") for v in service["volumes"])}
        folder, _ = env["STREAMER_AUTH__USERS_FILE"].rsplit("/", 1)
        assert mounts[folder] == "./users", name  # the folder, so that a rewritten file reaches the worker
        behind_nginx = service["command"][-1] == "--no-cameras"
        assert yaml.safe_load(env.get("STREAMER_AUTH__TRUSTED_PROXIES", "[]")) == ([nginx] if behind_nginx else []), name
    prometheus = services["prometheus"]["volumes"]
    for job in yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())["scrape_configs"]:
        key = job["authorization"]["credentials_file"]  # relative: beside prometheus.yml
        assert f"./prometheus/{key}:/etc/prometheus/{key}:ro" in prometheus


def test_every_compose_camera_worker_has_cameras(monkeypatch: pytest.MonkeyPatch):
    for service in yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"].values():
        if "--shard" not in service.get("command", []):
            continue
        # The mounted settings file, read from deploy/, with the service's other variables.
        mounts = {target: source for source, target in (v.removesuffix(":ro").split(":") for v in service["volumes"])}
        env = {**service["environment"], "STREAMER_CONFIG": str(DEPLOY / mounts[service["environment"]["STREAMER_CONFIG"]])}
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        shard = service["command"][service["command"].index("--shard") + 1]
        monkeypatch.setenv("STREAMER_SERVER__SHARD", shard)
        assert any(placement.local for placement in camera_map(load_settings())), f"shard {shard} runs no camera"


def docker_rules() -> list[tuple[bool, re.Pattern]]:
    """.dockerignore as (exception, pattern) pairs, with Docker's syntax: * and ? within a path
    element, ** across elements, ! for an exception, the last rule that matches wins."""
    rules = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        exception = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        regex = ""
        for token in re.findall(r"\*\*/|\*\*|\*|\?|\[[^]]*\]|[^*?[]+", pattern):
            regex += {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(token) or (
                token if token.startswith("[") else re.escape(token)
            )
        rules.append((exception, re.compile(regex)))
    return rules


def ignored(path: str, rules: list[tuple[bool, re.Pattern]]) -> bool:
    """Whether Docker leaves ``path`` out: a rule matches a path or any folder above it."""
    parts = path.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    verdict = False
    for exception, regex in rules:
        if any(regex.fullmatch(candidate) for candidate in candidates):
            verdict = not exception
    return verdict


def build_context() -> dict[str, int]:
    """Every file of the build context (the checkout as it is, untracked files too) and its size."""
    rules = docker_rules()
    exceptions = [regex.pattern for exception, regex in rules if exception]
    files = {}
    for folder, dirs, names in os.walk(ROOT):
        relative = Path(folder).relative_to(ROOT).as_posix()
        prefix = "" if relative == "." else f"{relative}/"
        # A left-out folder is not walked unless an exception could bring back something in it.
        dirs[:] = [
            d for d in dirs if not ignored(prefix + d, rules) or any(p.startswith(re.escape(prefix + d)) for p in exceptions)
        ]
        for name in names:
            if not ignored(prefix + name, rules) and not os.path.islink(os.path.join(folder, name)):
                files[prefix + name] = os.path.getsize(os.path.join(folder, name))
    return files


def test_the_docker_build_context_is_small_and_has_what_the_dockerfile_copies():
    context = build_context()
    size = sum(context.values())
    assert size < CONTEXT_LIMIT, f"{size / 1e6:.1f} MB: {sorted(context, key=context.get)[-10:]}"
    dockerfile = (ROOT / "Dockerfile").read_text()
    copied = [source for line in re.findall(r"^COPY (.+) \S+$", dockerfile, flags=re.M) for source in line.split()]
    for source in copied:
        assert source in context or any(path.startswith(source + "/") for path in context), source
    assert {"streamer/default.yaml", "streamer/assets/demo.mp4", "streamer/web/index.html"} <= context.keys()
    left_out = (".git/", ".venv/", "tests/", "bench/", "deploy/")
    assert not any(path.startswith(left_out) or "__pycache__" in path for path in context)


def test_the_docker_rules_match_as_docker_does():
    rules = [(False, re.compile(r"[^/]*")), (True, re.compile(r"keep")), (False, re.compile(r"(?:.*/)?cache"))]
    assert ignored("venv/lib/x.py", rules) and not ignored("keep/x.py", rules)
    assert ignored("keep/a/cache/x", rules) and ignored("keep/cache", rules)
    assert [regex.pattern for _, regex in docker_rules()][:2] == [r"[^/]*", re.escape("requirements.lock")]


def test_the_image_installs_from_the_lock_as_a_user_with_a_health_check():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "pip install --no-cache-dir --require-hashes -r requirements.lock" in dockerfile
    assert "python -m streamer.models" in dockerfile  # the model is prepared at build time
    user = re.findall(r"^USER (\S+)$", dockerfile, flags=re.M)
    assert user and user[-1] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK .*\n?.*/readyz", dockerfile, flags=re.M)
