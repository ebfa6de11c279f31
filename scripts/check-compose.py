#!/usr/bin/env python3
"""Checks docker-compose.yml against the binaries' real configuration surface (no Docker engine
needed): every environment variable a service sets is one its binary reads (clap's `--help`
lists them as `[env: NAME=...]`), the published port is the one HTTP_ADDR listens on, the
health check probes that port, and every mounted host file exists. For Grafana: the
provisioning and dashboards are mounted read-only where the provisioning files expect them, the
datasource points at the Prometheus service, and every datasource the dashboards name is the
provisioned one, by uid."""
import glob
import json
import os
import re
import subprocess
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "debug")
# Read by the tracing set-up rather than clap.
COMMON_ENV = {"RUST_LOG", "LOG_FORMAT"}


def env_names(binary, subcommand):
    names = set()
    # Settings may sit on the binary (before the subcommand) or on the subcommand.
    for args in ([binary, "--help"], [binary, subcommand, "--help"]):
        args[0] = os.path.join(BIN, args[0])
        out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
        names |= set(re.findall(r"\[env: ([A-Z0-9_]+)[=\]]", out))
    return names


def main():
    with open(os.path.join(ROOT, "docker-compose.yml")) as f:
        compose = yaml.safe_load(f)
    errors = []
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith(".") or source.startswith("/"):
                if not os.path.exists(os.path.join(ROOT, source)):
                    errors.append(f"{name}: mounted {source} does not exist")
        command = service.get("command")
        if not command or not str(command[0]).startswith("followup-"):
            continue
        binary, subcommand = command[0], command[1]
        known = env_names(binary, subcommand) | COMMON_ENV
        env = service.get("environment", {})
        for key in env:
            if key not in known:
                errors.append(f"{name}: {key} is not read by `{binary} {subcommand}`")
        addr = env.get("HTTP_ADDR")
        if addr:
            port = addr.rsplit(":", 1)[1]
            published = [p.split(":")[-1] for p in service.get("ports", [])]
            if port not in published:
                errors.append(f"{name}: HTTP_ADDR port {port} is not published ({published})")
            probe = " ".join(service.get("healthcheck", {}).get("test", []))
            if f":{port}/" not in probe:
                errors.append(f"{name}: health check does not probe port {port}")
        if "DATABASE_URL" not in env:
            errors.append(f"{name}: no DATABASE_URL")
    check_grafana(compose, errors)
    if errors:
        print("docker-compose.yml does not match the binaries:", *errors, sep="\n  ")
        sys.exit(1)
    print(f"docker-compose.yml: {len(compose['services'])} services match the binaries' configuration")


def mounts(service):
    """Container path → host path of the service's bind mounts (read-only or not)."""
    result = {}
    for volume in service.get("volumes", []):
        parts = volume.split(":")
        if parts[0].startswith(".") and len(parts) >= 2:
            result[parts[1].rstrip("/")] = (os.path.normpath(os.path.join(ROOT, parts[0])), parts[2:] == ["ro"])
    return result


def host_path(mounted, container_path):
    """The host file behind a container path, or None when no bind mount covers it."""
    for target, (source, _) in mounted.items():
        if container_path == target or container_path.startswith(target + "/"):
            return source + container_path[len(target):]
    return None


def datasource_uids(node):
    """Every datasource reference in a dashboard: uids, or the bare names of old dashboards."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource" and isinstance(value, dict):
                yield value.get("uid")
            elif key == "datasource" and isinstance(value, str):
                yield f"name:{value}"
            else:
                yield from datasource_uids(value)
    elif isinstance(node, list):
        for item in node:
            yield from datasource_uids(item)


def check_grafana(compose, errors):
    services = compose["services"]
    grafana = services.get("grafana")
    if not grafana:
        errors.append("no grafana service")
        return
    mounted = mounts(grafana)
    for target in ("/etc/grafana/provisioning", "/etc/grafana/dashboards"):
        if target not in mounted:
            errors.append(f"grafana: nothing mounted at {target}")
            return
        if not mounted[target][1]:
            errors.append(f"grafana: {target} is not mounted read-only")
    if "3000" not in [p.split(":")[-1] for p in grafana.get("ports", [])]:
        errors.append("grafana: port 3000 is not published")
    if ":3000/api/health" not in " ".join(grafana.get("healthcheck", {}).get("test", [])):
        errors.append("grafana: health check does not probe :3000/api/health")
    for key, value in grafana.get("environment", {}).items():
        path = str(value)
        if path.startswith("/etc/grafana/") and not os.path.exists(host_path(mounted, path) or ""):
            errors.append(f"grafana: {key}={path} is not a mounted file")
    provisioning = mounted["/etc/grafana/provisioning"][0]
    uids = set()
    for path in glob.glob(os.path.join(provisioning, "datasources", "*.yml")):
        with open(path) as f:
            for source in yaml.safe_load(f).get("datasources", []):
                uids.add(source.get("uid"))
                url = source.get("url", "")
                host, _, port = url.split("://", 1)[-1].split("/")[0].partition(":")
                published = [p.split(":")[-1] for p in services.get(host, {}).get("ports", [])]
                if port not in published:
                    errors.append(f"grafana datasource {source.get('name')}: {url} is no service port")
    if not uids or None in uids:
        errors.append("grafana: no provisioned datasource with a uid")
    dashboards = []
    for path in glob.glob(os.path.join(provisioning, "dashboards", "*.yml")):
        with open(path) as f:
            for provider in yaml.safe_load(f).get("providers", []):
                folder = host_path(mounted, provider.get("options", {}).get("path", ""))
                found = glob.glob(os.path.join(folder or "/nonexistent", "*.json"))
                if not found:
                    errors.append(f"grafana provider {provider.get('name')}: no dashboards mounted at its path")
                dashboards += found
    if not dashboards:
        errors.append("grafana: no dashboard provider with dashboards")
    for path in dashboards:
        with open(path) as f:
            refs = set(datasource_uids(json.load(f)))
        name = os.path.relpath(path, ROOT)
        if not refs:
            errors.append(f"{name}: no panel names its datasource")
        for ref in sorted(refs - uids, key=str):
            errors.append(f"{name}: datasource {ref} is not provisioned (uids: {sorted(uids)})")


if __name__ == "__main__":
    main()
