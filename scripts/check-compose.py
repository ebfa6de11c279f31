#!/usr/bin/env python3
"""Checks docker-compose.yml against the binaries' real configuration surface (no Docker engine
needed): every environment variable a service sets is one its binary reads (clap's `--help`
lists them as `[env: NAME=...]`), the published port is the one HTTP_ADDR listens on, the
health check probes that port, and every mounted host file exists."""
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
    if errors:
        print("docker-compose.yml does not match the binaries:", *errors, sep="\n  ")
        sys.exit(1)
    print(f"docker-compose.yml: {len(compose['services'])} services match the binaries' configuration")


if __name__ == "__main__":
    main()
