"""deploy/k8s renders with kustomize, every object is valid for Kubernetes 1.32, and the objects agree with each other.

Validation is offline, against the schemas that kubernetes-validate ships (strict: unknown fields are errors).
"""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[2]
K8S = PROJECT_ROOT / "deploy" / "k8s"
KUBERNETES_VERSION = "1.32"
PRE_STOP_SLEEP_SECONDS = 5


@pytest.fixture(scope="module")
def rendered() -> list[dict]:
    """The objects `kubectl kustomize deploy/k8s` renders."""
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl (with kustomize) is needed to render deploy/k8s"
    result = subprocess.run([kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return [document for document in yaml.safe_load_all(result.stdout) if document]


@pytest.fixture(scope="module")
def secret_template() -> dict:
    """The Secret template users fill in (not part of the kustomization)."""
    return yaml.safe_load((K8S / "secret.example.yaml").read_text())


def by_kind(objects: list[dict], kind: str, name: str) -> dict:
    """The one object of this kind and name."""
    [found] = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def test_the_rendered_objects_and_the_secret_template_are_valid_kubernetes(rendered, secret_template):
    kinds = sorted((o["kind"], o["metadata"]["name"]) for o in rendered)
    assert kinds == [
        ("ConfigMap", "rooms-config"), ("Deployment", "rooms-relay"), ("Deployment", "rooms-service"),
        ("HorizontalPodAutoscaler", "rooms-service"), ("Job", "rooms-migrate"),
        ("PodDisruptionBudget", "rooms-service"), ("Service", "rooms-service"),
    ]
    for document in [*rendered, secret_template]:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_the_validator_rejects_what_kubernetes_would(rendered):
    deployment = copy.deepcopy(by_kind(rendered, "Deployment", "rooms-service"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["pathh"] = "/v1/ready"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)
    job = copy.deepcopy(by_kind(rendered, "Job", "rooms-migrate"))
    job["spec"]["backoffLimit"] = "four"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(job, KUBERNETES_VERSION, strict=True)


def pod_specs(objects: list[dict]) -> dict[str, dict]:
    """The pod template of every workload, by workload name."""
    return {o["metadata"]["name"]: o["spec"]["template"]["spec"] for o in objects if o["kind"] in {"Deployment", "Job"}}


def test_every_pod_runs_the_image_non_root_on_a_read_only_root_with_its_settings(rendered, secret_template):
    config = by_kind(rendered, "ConfigMap", "rooms-config")
    commands = {}
    for name, pod in pod_specs(rendered).items():
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001, name
        [container] = pod["containers"]
        assert container["image"] == "registry.example.com/rooms-service:1.0.0", name  # kustomize's images: applied
        assert container["securityContext"]["readOnlyRootFilesystem"] is True, name
        assert container["securityContext"]["allowPrivilegeEscalation"] is False, name
        assert {"requests", "limits"} <= set(container["resources"]), name
        sources = container["envFrom"]
        assert {"configMapRef": {"name": config["metadata"]["name"]}} in sources, name
        assert {"secretRef": {"name": secret_template["metadata"]["name"]}} in sources, name
        commands[name] = container["args"]
    assert commands == {"rooms-service": ["serve"], "rooms-relay": ["relay"], "rooms-migrate": ["migrate"]}
    # The secret's keys and the config's are settings the service reads, never both places for one.
    assert not set(config["data"]) & set(secret_template["stringData"])


def test_the_service_pods_probe_drain_and_stop_within_their_grace_period(rendered):
    config = by_kind(rendered, "ConfigMap", "rooms-config")["data"]
    pod = pod_specs(rendered)["rooms-service"]
    [container] = pod["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/v1/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v1/health"
    assert container["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", str(PRE_STOP_SLEEP_SECONDS)]
    graceful = int(config["APP_GRACEFUL_SHUTDOWN_SECONDS"])
    assert pod["terminationGracePeriodSeconds"] > PRE_STOP_SLEEP_SECONDS + graceful
    # /tmp, for the workers' metrics files, is the only writable mount.
    assert [m["mountPath"] for m in container["volumeMounts"]] == ["/tmp"]
    assert [v["name"] for v in pod["volumes"]] == ["tmp"] and "emptyDir" in pod["volumes"][0]
    assert int(config["APP_WORKERS"]) <= int(container["resources"]["limits"]["cpu"])


def test_the_service_pdb_and_autoscaler_select_the_service_pods_and_two_relays_take_turns(rendered):
    deployment = by_kind(rendered, "Deployment", "rooms-service")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    port_names = {p["name"] for p in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]}
    service = by_kind(rendered, "Service", "rooms-service")
    assert service["spec"]["selector"].items() <= labels.items()
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= port_names
    pdb = by_kind(rendered, "PodDisruptionBudget", "rooms-service")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["minAvailable"] < deployment["spec"]["replicas"]
    hpa = by_kind(rendered, "HorizontalPodAutoscaler", "rooms-service")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "rooms-service"}
    assert hpa["spec"]["minReplicas"] > pdb["spec"]["minAvailable"]
    relay = by_kind(rendered, "Deployment", "rooms-relay")
    assert relay["spec"]["replicas"] == 2
    assert not relay["spec"]["template"]["metadata"]["labels"].items() <= labels.items()  # not behind the Service
