"""The container image and the Kubernetes manifests of deploy/, checked against the real
server: the manifests are parsed (PyYAML), their arguments run ``voxwire serve``, the
probe paths and ports are asked over sockets, the autoscaler's metric is looked for on
``/metrics``, a drain is watched through the probes, and the image's health check command
is run. No image is built here (that needs a Docker daemon)."""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import signal
import subprocess
import sys
from typing import Any

import pytest

from tests.deploy.fleet import (
    DEPLOY,
    agent_reply,
    free_port,
    http_get,
    metrics,
    option,
    replaced,
    start_serve,
    stop,
    wait_listening,
)
from voxwire.cli import _build_parser

yaml = pytest.importorskip("yaml", reason="the manifests are read with PyYAML")
pytest.importorskip("websockets", reason="the server needs websockets")
pytest.importorskip("prometheus_client", reason="the manifests' server runs with --metrics")


KUBE = DEPLOY / "kubernetes"
ROOT = DEPLOY.parent


def manifests() -> dict[str, dict[str, Any]]:
    """Every object of deploy/kubernetes, by kind (one of each)."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(KUBE.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            assert doc["kind"] not in found, f"two {doc['kind']} objects"
            found[doc["kind"]] = doc
    return found


def container(objects: dict[str, dict[str, Any]]) -> dict[str, Any]:
    (only,) = objects["Deployment"]["spec"]["template"]["spec"]["containers"]
    return only


def dockerfile() -> list[tuple[str, str]]:
    """The Dockerfile's instructions, (INSTRUCTION, rest), continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", (DEPLOY / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def serve_args(args: list[str]) -> list[str]:
    """The arguments of a manifest, on loopback and free ports."""
    return replaced(
        args,
        {"--host": "127.0.0.1", "--port": str(free_port()), "--agent-port": str(free_port())},
    )


def test_the_kubernetes_objects_fit_each_other() -> None:
    objects = manifests()
    assert set(objects) >= {
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "ConfigMap",
        "Kustomization",
    }
    deployment = objects["Deployment"]
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert objects["Service"]["spec"]["selector"].items() <= labels.items()
    assert objects["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items() <= (
        labels.items()
    )
    target = objects["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    for resource in objects["Kustomization"]["resources"]:
        assert (KUBE / resource).is_file()

    c = container(objects)
    args = c["args"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    # the ports the server listens on are the ports the pod declares
    assert ports == {
        "http": int(option(args, "--port")),
        "agent": int(option(args, "--agent-port")),
    }
    for probe in (c["readinessProbe"], c["livenessProbe"]):
        assert probe["httpGet"]["port"] in ports
    assert {p["targetPort"] for p in objects["Service"]["spec"]["ports"]} <= set(ports)
    annotations = pod["metadata"]["annotations"]
    assert int(annotations["prometheus.io/port"]) == ports["http"]

    # the pod is not killed while it drains: preStop's sleep, then --drain-timeout
    command = c["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    grace = pod["spec"]["terminationGracePeriodSeconds"]
    assert grace > float(option(args, "--drain-timeout")) + float(command[1])

    # the user the pod runs as is the image's
    users = [rest for word, rest in dockerfile() if word == "USER"]
    assert pod["spec"]["securityContext"]["runAsUser"] == int(users[-1]) != 0

    # the autoscaler's metric is the adapter's, which reads the one voxwire exports
    hpa_metric = objects["HorizontalPodAutoscaler"]["spec"]["metrics"][0]["pods"]["metric"]
    rules = yaml.safe_load(objects["ConfigMap"]["data"]["config.yaml"])["rules"]
    (rule,) = rules
    assert rule["name"]["as"] == hpa_metric["name"]
    assert rule["seriesQuery"].startswith(hpa_metric["name"] + "{")
    assert re.fullmatch(rule["name"]["matches"], hpa_metric["name"])


def test_the_deployment_runs_the_real_server_and_its_probes_follow_a_drain() -> None:
    from voxwire.sim.load import run_load

    objects = manifests()
    c = container(objects)
    # every argument is one the server takes
    _build_parser().parse_args(["serve", *c["args"]])
    args = serve_args(c["args"])
    port, agent = int(option(args, "--port")), int(option(args, "--agent-port"))
    readiness = c["readinessProbe"]["httpGet"]["path"]
    liveness = c["livenessProbe"]["httpGet"]["path"]
    hpa_metric = objects["HorizontalPodAutoscaler"]["spec"]["metrics"][0]["pods"]["metric"]
    server = start_serve(args)
    try:
        wait_listening("127.0.0.1", port)
        wait_listening("127.0.0.1", agent)
        assert http_get("127.0.0.1", port, readiness)[0] == 200
        assert http_get("127.0.0.1", port, liveness)[0] == 200
        assert agent_reply("127.0.0.1", agent) == "up 100%\n"
        assert metrics("127.0.0.1", port)[hpa_metric["name"]] == 0

        async def during_a_call() -> tuple[Any, dict[str, Any]]:
            loop = asyncio.get_running_loop()
            call = asyncio.create_task(
                run_load(f"ws://127.0.0.1:{port}/", option(args, "--protocol"), 1, duration=3.0)
            )
            seen: dict[str, Any] = {}
            for _ in range(200):
                await asyncio.sleep(0.05)
                seen = await loop.run_in_executor(None, metrics, "127.0.0.1", port)
                if seen[hpa_metric["name"]] == 1:
                    break
            # what the kubelet does after preStop: SIGTERM
            server.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.5)
            get = http_get
            seen["ready"] = await loop.run_in_executor(None, get, "127.0.0.1", port, readiness)
            seen["live"] = await loop.run_in_executor(None, get, "127.0.0.1", port, liveness)
            seen["agent"] = await loop.run_in_executor(None, agent_reply, "127.0.0.1", agent)
            return await call, seen

        report, seen = asyncio.run(during_a_call())
        assert seen[hpa_metric["name"]] == 1
        # draining: out of the endpoints (readiness), not restarted (liveness)
        assert seen["ready"][0] == 503
        assert seen["ready"][1] == "draining\n"
        assert seen["live"][0] == 200
        assert seen["agent"] == "drain\n"
        # the call up ran to its end, then the server left on its own
        assert report.completed == 1, report.summary()
        assert report.errors == {}
        assert server.wait(timeout=30) == 0
    finally:
        out, err = stop(server)
    assert "stopped" in out, err


def test_the_image_entrypoint_command_and_health_check() -> None:
    steps = dockerfile()
    words = [w for w, _ in steps]
    froms = [rest for w, rest in steps if w == "FROM"]
    assert len(froms) == 2
    assert froms[0].split()[-2:] == ["AS", "build"]
    assert any(w == "COPY" and rest.startswith("--from=build ") for w, rest in steps)
    # the first stage copies files of the checkout (the build context is its top)
    second = words.index("FROM", 1)
    for w, rest in steps[:second]:
        if w == "COPY":
            for source in rest.split()[:-1]:
                assert (ROOT / source).exists(), source
    # the extras it installs exist
    tomllib = pytest.importorskip("tomllib", reason="pyproject.toml is read with tomllib")
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    default = next(rest for w, rest in steps[second:] if w == "ARG" and rest.startswith("EXTRAS="))
    assert set(default.split("=", 1)[1].split(",")) <= set(extras)
    (user,) = [rest for w, rest in steps[second:] if w == "USER"]
    assert user not in ("root", "0")
    assert ("STOPSIGNAL", "SIGTERM") in steps
    ignored = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    assert "**/*.so" in ignored  # a module built in place must not reach the wheel

    entrypoint = json.loads(next(rest for w, rest in steps if w == "ENTRYPOINT"))
    assert entrypoint == ["voxwire", "serve"]
    cmd = json.loads(next(rest for w, rest in steps if w == "CMD"))
    _build_parser().parse_args(["serve", *cmd])
    exposed = {int(p) for rest in (r for w, r in steps if w == "EXPOSE") for p in rest.split()}
    assert exposed == {int(option(cmd, "--port")), int(option(cmd, "--agent-port"))}

    check = next(rest for w, rest in steps if w == "HEALTHCHECK")
    probe = json.loads(check.split(" CMD ", 1)[1])
    address = f"127.0.0.1:{option(cmd, '--port')}/health"
    assert probe[0] == "python"
    assert address in " ".join(probe)

    args = serve_args(cmd)
    port = option(args, "--port")
    here = [sys.executable, *[a.replace(address, f"127.0.0.1:{port}/health") for a in probe[1:]]]
    # nothing listens yet: the check fails
    assert subprocess.run(here, capture_output=True, timeout=30).returncode != 0
    server = start_serve(args)
    try:
        wait_listening("127.0.0.1", int(port))
        result = subprocess.run(here, capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
        server.send_signal(signal.SIGTERM)  # the STOPSIGNAL: without calls, it leaves at once
        assert server.wait(timeout=30) == 0
    finally:
        stop(server)


def test_the_documented_commands_name_the_shipped_files() -> None:
    docs = (ROOT / "docs" / "operations.md").read_text()
    for command in re.findall(r"^(?:docker|kubectl|haproxy) .*$", docs, re.MULTILINE):
        for word in shlex.split(command):
            if word.startswith("deploy/"):
                assert (ROOT / word).exists(), command
