"""Dockerfile, Compose file and Kubernetes manifests, checked offline.

No Docker engine or cluster is needed: kustomize (kubectl's built-in) renders the overlays,
kubernetes-validate checks them against the Kubernetes schemas, hadolint and checkov lint
the Dockerfile and the rendered manifests, and the rest checks that all three deployment
paths start the same entry point and probe endpoints the app really serves.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from tests.conftest import REPO_ROOT
from veracity.api.app import create_app
from veracity.metrics import ServiceMetrics
from veracity.settings import Settings

DEPLOY_BIN = REPO_ROOT / ".venv-deploy" / "bin"
K8S = REPO_ROOT / "deploy" / "k8s"
ENTRY_POINT = ["veracity", "serve"]


def tool(name: str) -> str:
    path = DEPLOY_BIN / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    assert found, f"{name} not found: run `make install-deploy`"
    return found


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, capture_output=True, text=True, timeout=300, check=False, cwd=REPO_ROOT
    )


@pytest.fixture(scope="module", params=["cpu", "gpu"])
def rendered(request, tmp_path_factory) -> tuple[str, Path, list[dict]]:
    """An overlay rendered by kustomize: (name, file, documents)."""
    result = run(tool("kubectl"), "kustomize", str(K8S / "overlays" / request.param))
    assert result.returncode == 0, result.stderr
    out = tmp_path_factory.mktemp("k8s") / f"{request.param}.yaml"
    out.write_text(result.stdout)
    return request.param, out, [d for d in yaml.safe_load_all(result.stdout) if d]


def by_kind(documents: list[dict], kind: str) -> dict:
    (doc,) = [d for d in documents if d["kind"] == kind]
    return doc


def container(documents: list[dict]) -> dict:
    (spec,) = by_kind(documents, "Deployment")["spec"]["template"]["spec"]["containers"]
    return spec


@pytest.fixture(scope="module")
def served(tiny_checkpoint: Path):
    """GET a path on the real app (lifespan running); True if the app serves it."""
    app = create_app(Settings(_env_file=None, auth_disabled=True, checkpoint=tiny_checkpoint))
    with TestClient(app) as client:
        client.portal.call(app.state.model_service.wait_ready)
        yield lambda path: client.get(path).status_code == 200


def dockerfile_stages() -> dict[str, list[str]]:
    stages: dict[str, list[str]] = {}
    current = ""
    for line in (REPO_ROOT / "Dockerfile").read_text().splitlines():
        match = re.match(r"FROM \S+ AS (\S+)", line)
        if match:
            current = match.group(1)
            stages[current] = []
        elif current:
            stages[current].append(line)
    return stages


def test_dockerfile_passes_hadolint() -> None:
    result = run(tool("hadolint"), "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_has_no_checkov_findings() -> None:
    result = run(
        tool("checkov"),
        "-f",
        "Dockerfile",
        "--framework",
        "dockerfile",
        "--skip-download",
        "-o",
        "json",
    )
    report = json.loads(result.stdout)
    assert report["summary"]["failed"] == 0, report["results"]["failed_checks"]
    assert report["summary"]["passed"] > 0


def test_manifests_render_and_validate_against_the_kubernetes_schemas(rendered) -> None:
    _, path, documents = rendered
    result = run(tool("kubernetes-validate"), "--strict", "--quiet", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    # The only resources without a bundled schema are the Prometheus Operator's CRDs.
    unvalidated = re.findall(r"Couldn't find schema for kind (\w+)", result.stdout + result.stderr)
    assert sorted(unvalidated) == ["PrometheusRule", "ServiceMonitor"]
    kinds = sorted(d["kind"] for d in documents)
    assert kinds == sorted(
        [
            "Namespace",
            "ServiceAccount",
            "ConfigMap",
            "Deployment",
            "Service",
            "HorizontalPodAutoscaler",
            "PodDisruptionBudget",
            "NetworkPolicy",
            "ServiceMonitor",
            "PrometheusRule",
        ]
    )
    assert all(d["metadata"].get("namespace", "veracity") == "veracity" for d in documents)


def test_manifests_have_no_checkov_findings(rendered) -> None:
    _, path, _ = rendered
    result = run(
        tool("checkov"),
        "-f",
        str(path),
        "--framework",
        "kubernetes",
        "--skip-download",
        "-o",
        "json",
    )
    report = json.loads(result.stdout)
    assert report["summary"]["failed"] == 0, [
        c["check_id"] for c in report["results"]["failed_checks"]
    ]
    skipped = {c["check_id"] for c in report["results"]["skipped_checks"]}
    assert skipped <= {"CKV_K8S_43", "CKV_K8S_35"}  # each justified in deployment.yaml


def test_yaml_files_pass_yamllint() -> None:
    result = run(tool("yamllint"), "-s", "docker-compose.yml", "deploy/", ".yamllint.yaml")
    assert result.returncode == 0, result.stdout


def test_every_deployment_path_starts_the_same_entry_point(rendered) -> None:
    _, _, documents = rendered
    stages = dockerfile_stages()
    for stage in ("cpu", "gpu"):
        entrypoints = [line for line in stages[stage] if line.startswith("ENTRYPOINT")]
        assert entrypoints == [f"ENTRYPOINT {json.dumps(ENTRY_POINT)}"], stage
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    assert compose["services"]["veracity"]["command"] == ENTRY_POINT
    assert container(documents)["command"] == ENTRY_POINT
    # ...and it is the command the integration tests start.
    integration = (REPO_ROOT / "tests" / "integration" / "conftest.py").read_text()
    assert '"-m", "veracity", "serve"' in integration
    assert list(stages)[-1] == "cpu"  # the default target


def test_probes_and_ports_point_at_what_the_app_serves(rendered, served) -> None:
    name, _, documents = rendered
    spec = container(documents)
    probes = {
        kind: spec[kind]["httpGet"] for kind in ("startupProbe", "readinessProbe", "livenessProbe")
    }
    assert probes["readinessProbe"]["path"] == "/ready"
    assert probes["livenessProbe"]["path"] == "/health"
    assert all(served(p["path"]) and p["port"] == "http" for p in probes.values())
    (port,) = spec["ports"]
    config = by_kind(documents, "ConfigMap")["data"]
    assert port == {
        "name": "http",
        "containerPort": int(config["VERACITY_PORT"]),
        "protocol": "TCP",
    }
    assert config["VERACITY_HOST"] == "0.0.0.0"
    assert config["VERACITY_DEVICE"] == {"cpu": "cpu", "gpu": "cuda"}[name]
    service = by_kind(documents, "Service")
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    policy = by_kind(documents, "NetworkPolicy")
    assert policy["spec"]["ingress"][0]["ports"][0]["port"] == port["containerPort"]
    monitor = by_kind(documents, "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    assert served("/metrics")
    assert not served("/no-such-endpoint")
    assert set(monitor["spec"]["selector"]["matchLabels"].items()) <= set(
        service["metadata"]["labels"].items()
    )
    # Every configured variable is a real setting.
    fields = {f"VERACITY_{f.upper()}" for f in Settings.model_fields}
    assert set(config) <= fields


def test_container_is_locked_down_and_drains_before_it_is_killed(rendered) -> None:
    name, _, documents = rendered
    pod = by_kind(documents, "Deployment")["spec"]["template"]["spec"]
    spec = container(documents)
    security = spec["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["automountServiceAccountToken"] is False
    pause = int(spec["lifecycle"]["preStop"]["exec"]["command"][1])
    drain = float(by_kind(documents, "ConfigMap")["data"]["VERACITY_SHUTDOWN_DRAIN_S"])
    assert pod["terminationGracePeriodSeconds"] > pause + drain
    threads = next(e for e in spec["env"] if e["name"] == "VERACITY_INFERENCE_THREADS")
    assert threads["valueFrom"]["resourceFieldRef"]["resource"] == "limits.cpu"
    limits = spec["resources"]["limits"]
    assert ("nvidia.com/gpu" in limits) == (name == "gpu")
    assert [s["secretRef"]["name"] for s in spec["envFrom"] if "secretRef" in s] == [
        "veracity-api-keys"
    ]


def test_the_api_key_secret_is_an_example_only() -> None:
    secret = yaml.safe_load((K8S / "secret.example.yaml").read_text())
    assert secret["kind"] == "Secret"
    assert secret["metadata"]["name"] == "veracity-api-keys"
    assert secret["stringData"]["VERACITY_API_KEYS"] == "REPLACE-WITH-GENERATED-KEY"
    for kustomization in K8S.rglob("kustomization.yaml"):
        assert "secret" not in kustomization.read_text().split("resources:")[1].split("#")[0]


def test_dockerfile_runs_as_non_root_with_a_healthcheck() -> None:
    for stage in ("cpu", "gpu"):
        lines = dockerfile_stages()[stage]
        assert "USER 10001:10001" in lines
        assert any(line.strip() == 'CMD ["veracity", "healthcheck"]' for line in lines)
        assert "EXPOSE 8001" in lines
        assert any(
            "checkpoints/demo.safetensors" in line for line in lines if line.startswith("COPY")
        )


def test_dockerignore_keeps_secrets_data_and_environments_out() -> None:
    patterns = [
        line.strip()
        for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*"  # everything is excluded unless re-included below
    included = [p[1:] for p in patterns if p.startswith("!")]
    for private in (".env", "data", ".venv", ".venv-deploy", "tests", "runs", ".git"):
        assert not any(p == private or p.startswith(f"{private}/") for p in included), private
    # What the Dockerfile copies is re-included.
    copied = {"src/", "pyproject.toml", "README.md", "requirements.txt"}
    assert copied <= set(included)


def test_compose_runs_the_service_with_health_check_volume_and_prometheus() -> None:
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    service = compose["services"]["veracity"]
    assert service["build"]["target"] == "cpu"
    assert service["env_file"][0]["path"] == ".env"
    assert service["restart"] == "unless-stopped"
    assert service["healthcheck"]["test"] == ["CMD", "veracity", "healthcheck"]
    assert "./checkpoints:/app/checkpoints:ro" in service["volumes"]
    assert service["environment"]["VERACITY_HOST"] == "0.0.0.0"
    # Receipts from the first run: the key `veracity init-env` writes, as a Compose secret.
    (secret,) = service["secrets"]
    assert (
        service["environment"]["VERACITY_RECEIPT_SIGNING_KEY"] == f"/run/secrets/{secret['target']}"
    )
    assert compose["secrets"][secret["source"]]["file"].endswith("./var/keys/receipts.pem}")
    grace = int(service["stop_grace_period"].removesuffix("s"))
    assert grace > Settings.model_fields["shutdown_drain_s"].default
    prometheus = compose["services"]["prometheus"]
    assert prometheus["profiles"] == ["monitoring"]
    config_mount = next(v for v in prometheus["volumes"] if v.endswith("prometheus.yml:ro"))
    scrape = yaml.safe_load((REPO_ROOT / config_mount.split(":")[0]).read_text())
    (job,) = scrape["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"][0]["targets"] == [
        f"veracity:{service['environment']['VERACITY_PORT']}"
    ]


def test_slim_venv_removes_build_only_files_and_keeps_the_runtime(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120
    )
    site = Path(
        subprocess.run(
            [
                str(venv / "bin" / "python"),
                "-c",
                "import sysconfig; print(sysconfig.get_paths()['purelib'])",
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout.strip()
    )
    torch_dir = site / "torch"
    for relative in (
        "include/ATen/core.h",
        "share/cmake/Torch.cmake",
        "bin/test_api",
        "bin/protoc",
        "bin/torch_shm_manager",
        "lib/libtorch_cpu.so",
        "__pycache__/x.pyc",
        "__init__.py",
    ):
        (torch_dir / relative).parent.mkdir(parents=True, exist_ok=True)
        (torch_dir / relative).write_text("x")
    fixture = site / "onnx" / "backend" / "test" / "data" / "node" / "model.onnx"
    fixture.parent.mkdir(parents=True)
    fixture.write_text("x")
    c2pa_libs = site / "c2pa" / "libs"
    c2pa_libs.mkdir(parents=True)
    for name in ("libc2pa_c.so", "libc2pa_c.rlib", "libc2pa_c.d"):
        (c2pa_libs / name).write_text("x")
    result = run("sh", "deploy/docker/slim-venv.sh", str(venv))
    assert result.returncode == 0, result.stderr
    remaining = {str(p.relative_to(torch_dir)) for p in torch_dir.rglob("*") if p.is_file()}
    assert remaining == {"bin/torch_shm_manager", "lib/libtorch_cpu.so", "__init__.py"}
    assert not fixture.exists()
    assert sorted(p.name for p in c2pa_libs.iterdir()) == ["libc2pa_c.so"]


KSERVE = REPO_ROOT / "deploy" / "kserve" / "inferenceservice.yaml"


def _model_class(type_name: str):
    """The KServe SDK's (or the Kubernetes client's) generated model for a type name."""
    import kserve.models
    import kubernetes.client.models

    for module in (kserve.models, kubernetes.client.models):
        if hasattr(module, type_name):
            return getattr(module, type_name)
    return None


def _unknown_fields(value: object, type_name: str, where: str) -> list[str]:
    """Fields the SDK's models do not have, recursively (the CRD schema is not bundled, so
    the SDK's generated models stand in for it)."""
    if type_name.startswith("list[") and isinstance(value, list):
        inner = type_name[5:-1]
        return [
            p for i, item in enumerate(value) for p in _unknown_fields(item, inner, f"{where}[{i}]")
        ]
    if type_name.startswith("dict(") and isinstance(value, dict):
        inner = type_name.split(", ", 1)[1][:-1]
        return [
            p for k, item in value.items() for p in _unknown_fields(item, inner, f"{where}.{k}")
        ]
    model = _model_class(type_name)
    if model is None or not isinstance(value, dict):
        return []
    by_json_name = {json_name: attr for attr, json_name in model.attribute_map.items()}
    problems = []
    for key, item in value.items():
        if key not in by_json_name:
            problems.append(f"{where}.{key}")
        else:
            problems += _unknown_fields(
                item, model.openapi_types[by_json_name[key]], f"{where}.{key}"
            )
    return problems


def test_the_kserve_inference_service_matches_the_sdk_and_the_app(served) -> None:
    document = yaml.safe_load(KSERVE.read_text())
    assert document["apiVersion"] == "serving.kserve.io/v1beta1"
    assert document["kind"] == "InferenceService"
    # Every field is one KServe's InferenceService (and the Kubernetes pod spec) has.
    spec = {k: v for k, v in document.items() if k not in ("apiVersion", "kind")}
    assert _unknown_fields(spec, "V1beta1InferenceService", "") == []
    predictor = document["spec"]["predictor"]
    (spec,) = predictor["containers"]
    assert spec["name"] == "kserve-container"
    assert spec["command"] == ENTRY_POINT
    env = {e["name"]: e.get("value") for e in spec["env"]}
    assert set(env) <= {f"VERACITY_{f.upper()}" for f in Settings.model_fields}
    (port,) = spec["ports"]
    assert port["containerPort"] == int(env["VERACITY_PORT"]) == 8080
    assert env["VERACITY_HOST"] == "0.0.0.0"
    probes = {k: spec[k]["httpGet"] for k in ("startupProbe", "readinessProbe", "livenessProbe")}
    assert probes["readinessProbe"]["path"] == "/v2/health/ready"
    assert probes["livenessProbe"]["path"] == "/v2/health/live"
    assert all(served(p["path"]) and p["port"] == "http" for p in probes.values())
    mounts = {m["mountPath"]: m for m in spec["volumeMounts"]}
    assert mounts[env["VERACITY_MODEL_REPOSITORY"]]["readOnly"] is True
    security = spec["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"]["drop"] == ["ALL"]
    assert predictor["securityContext"]["runAsNonRoot"] is True
    assert [s["secretRef"]["name"] for s in spec["envFrom"]] == ["veracity-api-keys"]
    drain = float(env["VERACITY_SHUTDOWN_DRAIN_S"])
    assert predictor["terminationGracePeriodSeconds"] > drain + 5


def test_the_sdk_check_catches_a_misspelt_field() -> None:
    document = yaml.safe_load(KSERVE.read_text())
    document["spec"]["predictor"]["containers"][0]["readinesProbe"] = {}
    document["spec"]["predictor"]["minReplica"] = 1
    spec = {k: v for k, v in document.items() if k not in ("apiVersion", "kind")}
    assert sorted(_unknown_fields(spec, "V1beta1InferenceService", "")) == [
        ".spec.predictor.containers[0].readinesProbe",
        ".spec.predictor.minReplica",
    ]


def test_the_gpu_image_swaps_in_onnx_runtimes_gpu_build_at_the_pinned_version() -> None:
    pins = dict(
        line.split("==", 1)
        for line in (REPO_ROOT / "requirements.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    gpu_build = "\n".join(dockerfile_stages()["gpu-build"])
    assert f"ARG ONNXRUNTIME_VERSION={pins['onnxruntime']}" in gpu_build
    assert "pip uninstall -y onnxruntime" in gpu_build
    assert "onnxruntime-gpu" not in "\n".join(dockerfile_stages()["cpu-build"])


def test_alert_rules_are_the_same_for_compose_and_the_operator_and_name_real_metrics() -> None:
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    mounts = compose["services"]["prometheus"]["volumes"]
    rules_mount = next(v for v in mounts if v.endswith("alerts.yml:ro"))
    host, container, _ = rules_mount.split(":")
    config = yaml.safe_load((REPO_ROOT / "deploy/prometheus/prometheus.yml").read_text())
    assert config["rule_files"] == [container]
    rules = yaml.safe_load((REPO_ROOT / host).read_text())
    operator = yaml.safe_load((K8S / "base" / "prometheusrule.yaml").read_text())
    assert operator["spec"] == rules
    registry = CollectorRegistry()
    ServiceMetrics(registry)
    exported = {family.name for family in registry.collect()}
    alerts = [r for group in rules["groups"] for r in group["rules"]]
    assert {r["alert"] for r in alerts} >= {"VeracityDrift", "VeracityReviewerAgreementLow"}
    for rule in alerts:
        names = set(re.findall(r"\b(veracity_[a-z_]+)\b", rule["expr"]))
        assert names
        assert names <= exported, (rule["alert"], names - exported)
        assert re.fullmatch(r"\d+[smh]", rule["for"])
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}
    # The agreement floor in the rule is the service's default floor.
    agreement = next(r for r in alerts if r["alert"] == "VeracityReviewerAgreementLow")
    floor = Settings.model_fields["drift_min_agreement"].default
    assert agreement["expr"].endswith(f"< {floor}")


RAYJOB = REPO_ROOT / "deploy" / "ray" / "rayjob.yaml"
# KubeRay's ray.io/v1 API (rayjob_types.go, raycluster_types.go): the fields of the parts of
# a RayJob the example uses. The CRD's schema is not on this machine; the pod templates are
# checked against the Kubernetes client's models, the cluster spec by Ray's own reader of
# KubeRay clusters (the autoscaler's), and the entry point by veracity's own parser.
RAYJOB_SPEC_FIELDS = {
    "activeDeadlineSeconds", "backoffLimit", "rayClusterSpec", "submitterPodTemplate",
    "metadata", "clusterSelector", "submitterConfig", "managedBy", "deletionPolicy",
    "entrypoint", "runtimeEnvYAML", "jobId", "submissionMode", "entrypointResources",
    "entrypointNumCpus", "entrypointNumGpus", "ttlSecondsAfterFinished",
    "shutdownAfterJobFinishes", "suspend",
}  # fmt: skip
CLUSTER_SPEC_FIELDS = {
    "headGroupSpec", "workerGroupSpecs", "rayVersion", "enableInTreeAutoscaling",
    "autoscalerOptions", "headServiceAnnotations", "suspend", "managedBy",
    "gcsFaultToleranceOptions",
}  # fmt: skip
HEAD_FIELDS = {"rayStartParams", "template", "serviceType", "enableIngress", "headService"}
WORKER_FIELDS = {
    "groupName", "replicas", "minReplicas", "maxReplicas", "rayStartParams", "template",
    "scaleStrategy", "numOfHosts", "suspend", "idleTimeoutSeconds",
}  # fmt: skip


def test_the_rayjob_example_is_a_valid_kuberay_job_running_a_real_scan() -> None:
    from ray.autoscaler._private.kuberay.autoscaling_config import (
        _derive_autoscaling_config_from_ray_cr,
    )

    from veracity.cli.command import build_parser

    document = yaml.safe_load(RAYJOB.read_text())
    assert (document["apiVersion"], document["kind"]) == ("ray.io/v1", "RayJob")
    spec = document["spec"]
    assert set(spec) <= RAYJOB_SPEC_FIELDS
    cluster = spec["rayClusterSpec"]
    assert set(cluster) <= CLUSTER_SPEC_FIELDS
    assert set(cluster["headGroupSpec"]) <= HEAD_FIELDS
    assert all(set(group) <= WORKER_FIELDS for group in cluster["workerGroupSpecs"])
    pins = dict(
        line.split("==", 1)
        for line in (REPO_ROOT / "requirements-ray.txt").read_text().splitlines()
        if "==" in line
    )
    assert cluster["rayVersion"] == pins["ray[data]"]
    templates = [cluster["headGroupSpec"]["template"]] + [
        group["template"] for group in cluster["workerGroupSpecs"]
    ]
    for template in templates:
        assert _unknown_fields(template, "V1PodTemplateSpec", "") == []
        pod = template["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        (container,) = pod["containers"]
        assert container["image"] == "veracity:ray"  # the Dockerfile's ray stage
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        env = {e["name"] for e in container["env"]}
        assert env <= {f"VERACITY_{f.upper()}" for f in Settings.model_fields}
        volumes = {v["name"]: v for v in pod["volumes"]}
        for mount in container["volumeMounts"]:
            assert mount["name"] in volumes
    # Ray's reader of KubeRay clusters sizes the node types from the same spec.
    derived = _derive_autoscaling_config_from_ray_cr(
        {"metadata": {"name": "veracity-scan", "namespace": "veracity"}, "spec": cluster}
    )
    (worker,) = cluster["workerGroupSpecs"]
    node = derived["available_node_types"][worker["groupName"]]
    assert derived["available_node_types"]["headgroup"]["resources"]["CPU"] == 0
    # The entry point is a real `veracity scan` whose actors fit the worker pods.
    program, *argv = spec["entrypoint"].split()
    assert program == "veracity"
    arguments = build_parser().parse_args(argv)
    assert arguments.ray == "auto"
    assert arguments.ray_cpus_per_actor == node["resources"]["CPU"]
    assert arguments.ray_actors <= worker["maxReplicas"]
    assert arguments.out.parent.as_posix() == "/results"
    head = cluster["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert "/results" in {m["mountPath"] for m in head["volumeMounts"]}
    assert all(
        m.get("readOnly") is True
        for template in templates
        for m in template["spec"]["containers"][0]["volumeMounts"]
        if m["mountPath"] in ("/archive", "/models")
    )


def test_the_ray_image_adds_ray_to_the_cpu_build() -> None:
    stages = dockerfile_stages()
    assert "FROM cpu-build AS ray-build" in (REPO_ROOT / "Dockerfile").read_text()
    assert any("requirements-ray.txt" in line for line in stages["ray-build"])
    assert "USER 10001:10001" in stages["ray"]
    assert list(stages)[-1] == "cpu"  # the service image stays the default, without Ray
