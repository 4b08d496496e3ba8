"""deploy/k8s: the overlays render, every object validates strictly against the Kubernetes
schemas, and what the manifests assume about the image and the app is true."""
from __future__ import annotations

import copy
import re
import shutil
import subprocess

import kubernetes_validate
import pytest
import yaml

from app.main import create_app
from app.metrics import Metrics
from app.settings import Settings
from tests.conftest import REPOSITORY_ROOT
from tests.e2e.test_deployment_files import dockerfile_cmd

K8S = REPOSITORY_ROOT / "deploy" / "k8s"
KUBERNETES_VERSION = "1.37.0"
OVERLAYS = ("cpu", "gpu")


def renderer() -> list[str]:
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    pytest.skip("neither kubectl nor kustomize is installed; the raw manifests are still validated below")


def render(directory) -> list[dict]:
    result = subprocess.run(renderer() + [str(directory)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    output = result.stdout
    return [document for document in yaml.safe_load_all(output) if document]


def by_kind(objects: list[dict], kind: str, name: str | None = None) -> dict:
    matches = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(matches) == 1, f"{kind} {name}: {len(matches)} objects"
    return matches[0]


def serves(app, path: str) -> bool:
    """Whether one of the app's routes answers GET `path`."""
    from starlette.routing import Match

    scope = {"type": "http", "path": path, "method": "GET", "root_path": ""}
    return any(route.matches(scope)[0] == Match.FULL for route in app.router.routes)


def validate_strictly(obj: dict) -> None:
    kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request) -> tuple[str, list[dict]]:
    return request.param, render(K8S / "overlays" / request.param)


def test_every_rendered_object_validates_strictly(overlay):
    name, objects = overlay
    kinds = sorted(o["kind"] for o in objects)
    assert kinds == ["ConfigMap", "Deployment", "HorizontalPodAutoscaler", "PersistentVolumeClaim",
                     "PodDisruptionBudget", "Service", "Service", "StatefulSet"], name
    for obj in objects:
        validate_strictly(obj)


def test_the_validation_is_strict(overlay):
    """A misspelled field fails: the check above can fail."""
    deployment = copy.deepcopy(by_kind(overlay[1], "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"httpGet": {"path": "/readyz", "port": 8000}}
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_strictly(deployment)


def test_raw_manifests_validate_without_a_renderer():
    for path in sorted((K8S / "base").glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for document in yaml.safe_load_all(path.read_text()):
            validate_strictly(document)


def test_overlays_pick_their_device(overlay):
    name, objects = overlay
    settings = by_kind(objects, "ConfigMap")["data"]
    container = by_kind(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    if name == "gpu":
        assert settings["RNNSERVE_DEVICE"] == "cuda"
        assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    else:
        assert settings["RNNSERVE_DEVICE"] == "cpu"
        assert "nvidia.com/gpu" not in str(container["resources"])
    assert {"requests", "limits"} <= set(container["resources"])


def test_container_agrees_with_the_image_and_the_app(overlay):
    objects = overlay[1]
    pod = by_kind(objects, "Deployment")["spec"]["template"]
    container = pod["spec"]["containers"][0]
    dockerfile = (REPOSITORY_ROOT / "docker" / "Dockerfile").read_text()
    command = dockerfile_cmd(REPOSITORY_ROOT / "docker" / "Dockerfile")
    image_port = int(command[command.index("--port") + 1])
    assert "command" not in container and "args" not in container  # the image's CMD runs
    assert re.search(rf"^EXPOSE {image_port}$", dockerfile, re.MULTILINE)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": image_port}
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(image_port)
    assert int(re.search(r"useradd .*--uid (\d+)", dockerfile).group(1)) == pod["spec"]["securityContext"]["runAsUser"]

    app = create_app(Settings(models_dir="", serve_shipped_models=False))
    probes = {kind: container[kind]["httpGet"] for kind in ("startupProbe", "readinessProbe", "livenessProbe")}
    assert probes["readinessProbe"]["path"] == "/readyz" and probes["livenessProbe"]["path"] == "/healthz"
    for probe in probes.values():
        assert serves(app, probe["path"]) and probe["port"] in ports
    assert serves(app, pod["metadata"]["annotations"]["prometheus.io/path"])

    service = by_kind(objects, "Service", "rnnserve")
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert service["spec"]["ports"][0]["targetPort"] in ports


def test_settings_are_settings_and_models_are_read_only(overlay):
    objects = overlay[1]
    config_map = by_kind(objects, "ConfigMap")
    fields = {"RNNSERVE_" + name.upper() for name in Settings.model_fields}
    assert set(config_map["data"]) <= fields, set(config_map["data"]) - fields
    Settings(**{key.removeprefix("RNNSERVE_").lower(): value for key, value in config_map["data"].items()})

    pod = by_kind(objects, "Deployment")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    sources = {next(iter(s)): next(iter(s.values())) for s in container["envFrom"]}
    assert sources["configMapRef"]["name"] == config_map["metadata"]["name"]
    assert sources["secretRef"]["name"] == "rnnserve-api-keys" and not sources["secretRef"].get("optional")
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["models"]["readOnly"] is True
    assert mounts["models"]["mountPath"] in config_map["data"]["RNNSERVE_MODELS_DIR"].split(":")
    claim = next(v for v in pod["volumes"] if v["name"] == "models")["persistentVolumeClaim"]
    assert claim["readOnly"] is True
    assert by_kind(objects, "PersistentVolumeClaim", claim["claimName"])

    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert {m["mountPath"] for m in container["volumeMounts"]} >= {"/tmp", "/dev/shm"}

    redis_host = re.match(r"redis://([^:/]+)", config_map["data"]["RNNSERVE_REDIS_URL"]).group(1)
    assert by_kind(objects, "Service", redis_host)["spec"]["selector"].items() <= \
        by_kind(objects, "StatefulSet", "rnnserve-redis")["spec"]["template"]["metadata"]["labels"].items()


def test_the_grace_period_covers_the_drain(overlay):
    objects = overlay[1]
    pod = by_kind(objects, "Deployment")["spec"]["template"]["spec"]
    pre_stop = pod["containers"][0]["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    request_timeout = float(by_kind(objects, "ConfigMap")["data"]["RNNSERVE_REQUEST_TIMEOUT_S"])
    assert pod["terminationGracePeriodSeconds"] >= float(pre_stop[1]) + request_timeout + 10
    strategy = by_kind(objects, "Deployment")["spec"]["strategy"]["rollingUpdate"]
    assert strategy["maxUnavailable"] == 0


def test_the_autoscaler_reads_a_metric_the_service_exports(overlay):
    objects = overlay[1]
    hpa = by_kind(objects, "HorizontalPodAutoscaler")
    deployment = by_kind(objects, "Deployment")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment["metadata"]["name"]}
    assert "replicas" not in deployment["spec"]  # the autoscaler owns it
    metric = hpa["spec"]["metrics"][0]["pods"]["metric"]["name"]
    rules = yaml.safe_load((K8S / "monitoring" / "prometheus-adapter-rules.yaml").read_text())["rules"]
    assert [rule["name"]["as"] for rule in rules] == [metric]
    assert rules[0]["seriesQuery"].startswith(metric + "{")
    assert f"# TYPE {metric} gauge" in Metrics().render()[0].decode()
    pdb = by_kind(objects, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"]


def test_external_redis_component_replaces_the_statefulset(tmp_path):
    """As the overlays' comment says to: the component added to an overlay."""
    tree = tmp_path / "k8s"
    shutil.copytree(K8S, tree)
    overlay = tree / "overlays" / "cpu" / "kustomization.yaml"
    overlay.write_text(overlay.read_text() + "components:\n  - ../../components/external-redis\n")
    objects = render(overlay.parent)
    assert not [o for o in objects if o["metadata"]["name"] == "rnnserve-redis"]
    assert by_kind(objects, "ConfigMap")["data"]["RNNSERVE_REDIS_URL"] == "redis://redis.example.internal:6379/0"
    for obj in objects:
        validate_strictly(obj)


def test_pod_monitor_scrapes_the_metrics_port():
    monitor = yaml.safe_load((K8S / "monitoring" / "podmonitor.yaml").read_text())
    deployment = yaml.safe_load((K8S / "base" / "deployment.yaml").read_text())
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    endpoint = monitor["spec"]["podMetricsEndpoints"][0]
    assert endpoint["port"] in {p["name"] for p in container["ports"]} and endpoint["path"] == "/metrics"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
