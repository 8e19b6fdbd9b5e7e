"""deploy/kubernetes: a kustomize base that renders, whose every manifest is valid against the
Kubernetes schemas (offline, bundled by kubernetes-validate), and whose probes, grace periods,
users, settings and network policies fit what Leadgate does."""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from gateway.server import SHUTDOWN_TIMEOUT
from gateway.settings import Settings
from tests.deploy.files import (
    DEPLOY,
    dockerfile,
    image_env,
    image_user_id,
    load_yaml_documents,
    names_in,
    setting_names,
)

BASE = DEPLOY / "kubernetes"
KUSTOMIZATION: dict[str, Any] = yaml.safe_load((BASE / "kustomization.yaml").read_text())
# The oldest Kubernetes the base is written for (autoscaling/v2, policy/v1, Job TTLs), and the
# newest whose schemas kubernetes-validate carries.
VERSIONS = ["1.27", kubernetes_validate.latest_version()]
WORKER_DRAIN = 5  # after an attempt's timeout (workers.main's job_completion_wait)
SHUTDOWN_MARGIN = 10  # closing pools and sessions after the drain
SECRETS = {"LEADGATE_SECRET_KEYS", "LEADGATE_DATABASE_URL", "LEADGATE_REDIS_URL"}
LEADGATE = {"app.kubernetes.io/name": "leadgate"}


def resources() -> list[dict[str, Any]]:
    return [doc for name in KUSTOMIZATION["resources"] for doc in load_yaml_documents(BASE / name)]


def find(kind: str, name: str) -> dict[str, Any]:
    (found,) = [r for r in resources() if r["kind"] == kind and r["metadata"]["name"] == name]
    return found


def pod_spec(kind: str, name: str) -> dict[str, Any]:
    spec: dict[str, Any] = find(kind, name)["spec"]["template"]["spec"]
    return spec


def container(kind: str, name: str, container_name: str) -> dict[str, Any]:
    (found,) = [c for c in pod_spec(kind, name)["containers"] if c["name"] == container_name]
    return found


def pod_templates() -> list[dict[str, Any]]:
    return [
        r["spec"]["template"]["spec"] for r in resources() if r["kind"] in ("Deployment", "Job")
    ]


def test_every_resource_the_kustomization_lists_exists_and_nothing_is_left_out() -> None:
    listed = set(KUSTOMIZATION["resources"])
    assert all((BASE / name).is_file() for name in listed)
    assert {p.name for p in BASE.glob("*.yaml")} - {"kustomization.yaml"} == listed


@pytest.mark.parametrize("version", VERSIONS)
def test_every_manifest_is_valid_against_the_kubernetes_schemas(version: str) -> None:
    for resource in resources():
        kubernetes_validate.validate(resource, version, strict=True)


def test_a_misspelt_field_is_refused_by_that_validation() -> None:
    """The check above can fail: strict validation refuses a field Kubernetes would drop."""
    deployment = find("Deployment", "leadgate-worker")
    deployment["spec"]["template"]["spec"]["containers"][0]["livenesProbee"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, VERSIONS[-1], strict=True)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (with kustomize) not found")
def test_kustomize_renders_the_base_and_the_rendering_is_valid(tmp_path: Path) -> None:
    done = subprocess.run(
        ["kubectl", "kustomize", str(BASE)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    rendered = [d for d in yaml.safe_load_all(done.stdout) if d]
    assert sorted((r["kind"], r["metadata"]["name"]) for r in rendered) == sorted(
        (r["kind"], r["metadata"]["name"]) for r in resources()
    )
    for resource in rendered:
        kubernetes_validate.validate(resource, VERSIONS[-1], strict=True)
        if resource["kind"] != "Namespace":
            assert resource["metadata"]["namespace"] == KUSTOMIZATION["namespace"]
    image = KUSTOMIZATION["images"][0]
    used = {
        c["image"]
        for r in rendered
        if r["kind"] in ("Deployment", "Job")
        for c in r["spec"]["template"]["spec"]["containers"]
        + r["spec"]["template"]["spec"].get("initContainers", [])
    }
    assert used == {f"{image['newName']}:{image['newTag']}"}


def test_the_gateway_is_ready_on_readyz_and_alive_on_healthz_at_the_image_port() -> None:
    gateway = container("Deployment", "leadgate-gateway", "gateway")
    assert gateway["args"] == ["serve"]
    port = next(p for p in gateway["ports"] if p["name"] == "http")["containerPort"]
    assert str(port) == image_env(dockerfile())["LEADGATE_PORT"]
    assert gateway["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert gateway["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    service = find("Service", "leadgate-gateway")
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert (
        service["spec"]["selector"]
        == find("Deployment", "leadgate-gateway")["spec"]["selector"]["matchLabels"]
    )


def test_the_gateway_scales_on_cpu_and_keeps_one_pod_through_disruptions() -> None:
    hpa = find("HorizontalPodAutoscaler", "leadgate-gateway")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "leadgate-gateway"
    assert hpa["spec"]["minReplicas"] >= 2
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    pdb = find("PodDisruptionBudget", "leadgate-gateway")
    assert pdb["spec"]["minAvailable"] >= 1
    assert pdb["spec"]["selector"] == find("Deployment", "leadgate-gateway")["spec"]["selector"]


def test_the_gateway_drains_requests_before_it_is_killed() -> None:
    spec = pod_spec("Deployment", "leadgate-gateway")
    pause = int(container("Deployment", "leadgate-gateway", "gateway")["lifecycle"]["preStop"]
                ["exec"]["command"][1])  # fmt: skip
    assert spec["terminationGracePeriodSeconds"] > pause + SHUTDOWN_TIMEOUT


def test_the_workers_grace_period_covers_an_attempt_timeout_and_the_drain() -> None:
    config = find("ConfigMap", "leadgate-config")["data"]
    timeout = float(config.get("LEADGATE_DELIVERY_TIMEOUT", Settings().delivery_timeout))
    grace = pod_spec("Deployment", "leadgate-worker")["terminationGracePeriodSeconds"]
    assert grace >= timeout + WORKER_DRAIN + SHUTDOWN_MARGIN
    worker = container("Deployment", "leadgate-worker", "worker")
    assert worker["args"] == ["worker"]
    metrics = next(p for p in worker["ports"] if p["name"] == "metrics")["containerPort"]
    assert str(metrics) == config["LEADGATE_WORKER_METRICS_PORT"]
    assert worker["livenessProbe"]["tcpSocket"]["port"] == "metrics"


def test_the_migration_job_runs_migrate_and_pods_wait_for_it() -> None:
    job = container("Job", "leadgate-migrate", "migrate")
    assert job["args"] == ["migrate"]
    for name in ("leadgate-gateway", "leadgate-worker"):
        (init,) = pod_spec("Deployment", name)["initContainers"]
        assert init["args"] == ["migrate", "--check"]


def test_every_container_requests_cpu_and_memory_and_runs_as_the_image_user() -> None:
    uid = image_user_id(dockerfile())
    for spec in pod_templates():
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] == uid
        assert spec["automountServiceAccountToken"] is False
        for c in spec["containers"] + spec.get("initContainers", []):
            assert {"cpu", "memory"} <= set(c["resources"]["requests"]), c["name"]
            assert c["securityContext"]["allowPrivilegeEscalation"] is False
            assert c["securityContext"]["readOnlyRootFilesystem"] is True


def test_settings_come_from_the_config_map_and_secrets_from_the_secret() -> None:
    secret = find("Secret", "leadgate-secrets")["stringData"]
    config = find("ConfigMap", "leadgate-config")["data"]
    assert set(secret) == SECRETS
    assert not set(config) & SECRETS
    assert names_in(" ".join(config)) - setting_names() == set()
    for spec in pod_templates():
        for c in spec["containers"] + spec.get("initContainers", []):
            sources = {
                ref.get("configMapRef", ref.get("secretRef", {}))["name"] for ref in c["envFrom"]
            }
            assert sources == {"leadgate-config", "leadgate-secrets"}, c["name"]


def test_every_leadgate_name_in_the_manifests_is_a_setting() -> None:
    text = " ".join(p.read_text() for p in BASE.glob("*.yaml"))
    assert names_in(text) - setting_names() == set()


# --- network policies, evaluated ----------------------------------------------------------------


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A label selector (matchLabels and `In` expressions) against a pod's labels."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In"
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def policies_for(labels: dict[str, str], direction: str) -> list[dict[str, Any]]:
    return [
        p["spec"]
        for p in resources()
        if p["kind"] == "NetworkPolicy"
        and direction in p["spec"]["policyTypes"]
        and selects(p["spec"]["podSelector"], labels)
    ]


def egress_ports(labels: dict[str, str]) -> set[int]:
    """Ports a pod may connect to whatever the address (rules without a `to`)."""
    return {
        port["port"]
        for spec in policies_for(labels, "Egress")
        for rule in spec.get("egress", [])
        if "to" not in rule
        for port in rule.get("ports", [])
    }


def public_egress(labels: dict[str, str]) -> list[dict[str, Any]]:
    """ipBlock rules open to every public address, on every port."""
    return [
        block["ipBlock"]
        for spec in policies_for(labels, "Egress")
        for rule in spec.get("egress", [])
        if "ports" not in rule
        for block in rule.get("to", [])
        if "ipBlock" in block and ipaddress.ip_network(block["ipBlock"]["cidr"]).prefixlen == 0
    ]


def component(name: str) -> dict[str, str]:
    return {**LEADGATE, "app.kubernetes.io/component": name}


def test_everything_is_denied_unless_a_policy_allows_it() -> None:
    anything = {"app": "something-else"}
    assert [p.get("ingress", []) for p in policies_for(anything, "Ingress")] == [[]]
    assert egress_ports(anything) == {53}
    assert public_egress(anything) == []


def test_only_workers_reach_the_internet_and_not_its_private_ranges() -> None:
    (v4, v6) = sorted(public_egress(component("worker")), key=lambda b: ":" in b["cidr"])
    private = [ipaddress.ip_network(n) for n in v4["except"] + v6["except"]]
    for address in ("10.1.2.3", "172.20.0.1", "192.168.1.1", "169.254.169.254", "127.0.0.1",
                    "fd00::1", "fe80::1"):  # fmt: skip
        assert any(ipaddress.ip_address(address) in net for net in private), address
    for other in ("gateway", "migrate"):
        assert public_egress(component(other)) == []


def test_gateways_workers_and_the_migration_reach_postgres() -> None:
    assert 5432 in egress_ports(component("gateway"))
    assert 5432 in egress_ports(component("worker"))
    assert egress_ports(component("migrate")) == {5432, 53}


def test_nothing_but_gateways_workers_and_the_migration_may_connect_to_postgres() -> None:
    postgres = {"app.kubernetes.io/name": "postgres"}
    (rule,) = [r for p in policies_for(postgres, "Ingress") for r in p.get("ingress", [])]
    assert [p["port"] for p in rule["ports"]] == [5432]

    def admitted(labels: dict[str, str]) -> bool:
        return any(selects(peer["podSelector"], labels) for peer in rule["from"])

    assert all(admitted(component(c)) for c in ("gateway", "worker", "migrate"))
    assert not admitted(component("dashboard"))
    assert not admitted({"app.kubernetes.io/component": "gateway"})  # another app's gateway
    assert all(set(peer) == {"podSelector"} for peer in rule["from"])  # no other namespace
