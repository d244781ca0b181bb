"""The production deployment (compose.yaml, Dockerfile, deploy/), checked without Docker.

There is no Docker engine where urbanbrain is developed, so nothing here can be started the
way production starts it. These tests pin down the properties a reviewer would otherwise
have to re-check by eye after every edit: exact image versions, required secrets, health
checks behind every `service_healthy`, one shared build, a non-root image, a build context
that cannot leak secrets, and a broker that refuses anonymous clients. The one part that
can run here, mosquitto with the production config and ACL, runs for real (marker
`servers`, skipped without the Debian package).
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import threading
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from composefile import (
    MissingVariable,
    dotenv,
    env_mapping,
    filled_example_env,
    interpolate_tree,
    strings,
    variables,
)

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
ENV_EXAMPLE = ROOT / ".env.example"
CONSTRAINTS = ROOT / "deploy" / "constraints.txt"
MOSQUITTO_DIR = ROOT / "deploy" / "mosquitto"

SERVERS = {"mosquitto", "kafka", "influxdb", "grafana"}
OUR_SERVICES = {"kafka-init", "influx-init", "ingest", "streams", "raw-store", "simulator",
                "console"}
EXPECTED_COMMANDS = {
    "kafka-init": ["kafka", "init"],
    "influx-init": ["influx", "init"],
    "ingest": ["ingest"],
    "streams": ["streams", "worker"],
    "raw-store": ["streams", "store-raw"],
    "console": ["console"],
    "simulator": ["simulate", "run", "--rate", "${SIMULATOR_RATE:-2000}",
                  "--registry", "/var/lib/urbanbrain/registry/devices.csv"],
}
# Bind-mount sources that another room creates later (dashboards/ provisioning as code).
CREATED_LATER = {"./dashboards/provisioning", "./dashboards/json"}

SECRET_NAME = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|API_KEY|PRIVATE_KEY|CREDENTIAL", re.IGNORECASE)
REQUIRED_VAR = re.compile(r"^\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*):\?(?P<msg>[^}]+)\}$")
EXACT_TAG = re.compile(r"^v?\d+\.\d+\.\d+(?:[-+][A-Za-z0-9.]+)?$")
# Attributes of a compose service that this stack may use: a typo such as `healtcheck`
# would otherwise be ignored silently by a reviewer and fail only on the production host.
SERVICE_KEYS = {
    "image", "build", "command", "entrypoint", "environment", "env_file", "volumes", "tmpfs",
    "ports", "expose", "healthcheck", "depends_on", "restart", "deploy", "profiles", "init",
    "logging", "cap_drop", "cap_add", "security_opt", "stop_grace_period", "user",
    "read_only", "networks", "labels", "ulimits", "mem_limit", "working_dir",
}


# --- helpers ------------------------------------------------------------------------------
def volume_specs(service: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(source, target, read_only) for each entry of a service's `volumes`."""
    specs = []
    for v in service.get("volumes", []):
        if isinstance(v, dict):
            specs.append((v.get("source", ""), v["target"], bool(v.get("read_only"))))
        else:
            parts = v.split(":")
            specs.append((parts[0], parts[1], len(parts) > 2 and "ro" in parts[2].split(",")))
    return specs


def is_bind(source: str) -> bool:
    return source.startswith((".", "/", "~"))


def conf_lines(path: Path) -> list[tuple[str, str]]:
    out = []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition(" ")
            out.append((key, value.strip()))
    return out


def conf_value(path: Path, key: str) -> str:
    values = [v for k, v in conf_lines(path) if k == key]
    assert values, f"{path.name} does not set {key}"
    return values[-1]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    assert COMPOSE.exists(), "compose.yaml is missing"
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


# --- services and images ------------------------------------------------------------------
def test_every_service_of_the_stack_exists(services):
    missing = (SERVERS | OUR_SERVICES) - set(services)
    assert not missing, f"compose.yaml lacks services {sorted(missing)}"
    for name, svc in services.items():
        unknown = set(svc) - SERVICE_KEYS
        assert not unknown, f"service {name}: unknown or unexpected keys {sorted(unknown)}"


def test_third_party_images_are_pinned_to_exact_versions(services):
    expected = {
        "mosquitto": ("eclipse-mosquitto", r"2\.0\.\d+"),
        "kafka": ("apache/kafka", r"3\.9\.\d+"),  # aiokafka is not ready for Kafka 4
        "influxdb": ("influxdb", r"1\.(?:[89]|1\d)\.\d+"),  # >= 1.8: /api/v2/write
        "grafana": ("grafana/grafana", r"\d+\.\d+\.\d+"),
    }
    for name, svc in services.items():
        image = svc.get("image", "")
        assert image, f"service {name} has no image"
        assert "$" not in image, f"{name}: image {image!r} must not depend on a variable"
        ref, _, digest = image.partition("@")
        repo, sep, tag = ref.rpartition(":")
        assert sep and "/" not in tag, f"{name}: image {image!r} has no tag"
        assert "latest" not in tag, f"{name}: {image!r} uses a moving 'latest' tag"
        assert EXACT_TAG.match(tag), f"{name}: {image!r} is not pinned to major.minor.patch"
        assert not digest or re.fullmatch(r"sha256:[0-9a-f]{64}", digest), image
        if name in expected:
            want_repo, want_tag = expected[name]
            assert repo == want_repo, f"{name}: expected image {want_repo}, got {repo}"
            assert re.fullmatch(want_tag, tag), f"{name}: {tag} is not the version line wanted"


def test_our_services_share_one_build_tagged_with_the_project_version(services):
    built = {name for name, svc in services.items() if "build" in svc}
    assert built == OUR_SERVICES, f"services built from the Dockerfile: {sorted(built)}"
    builds = {yaml.safe_dump(services[n]["build"], sort_keys=True) for n in built}
    images = {services[n]["image"] for n in built}
    assert len(builds) == 1, "all urbanbrain services must share one identical build"
    assert len(images) == 1, f"one image name for all urbanbrain services, got {images}"
    build = services["ingest"]["build"]
    assert build["context"] == "."
    assert (ROOT / build.get("dockerfile", "Dockerfile")).is_file()
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert images == {f"urbanbrain:{version}"}, (
        f"tag the image with the project version {version} (pyproject.toml)"
    )


def test_our_services_run_the_expected_commands(services):
    for name, command in EXPECTED_COMMANDS.items():
        assert services[name]["command"] == command, f"{name} command"
    registry = env_mapping(services["ingest"])["URBANBRAIN_REGISTRY_PATH"]
    assert services["simulator"]["command"][-1] == registry, "simulator writes another file"
    assert services["kafka-init"].get("restart") == "no", "kafka-init is a one-shot"
    assert services["influx-init"].get("restart") == "no", "influx-init is a one-shot"
    assert services["simulator"].get("profiles") == ["demo"]
    # opt-in, and only with the workers told to leave raw points to it
    assert services["raw-store"].get("profiles") == ["split-storage"]
    assert env_mapping(services["streams"])["URBANBRAIN_STREAMS_RAW_POINTS"] == (
        "${STREAMS_RAW_POINTS:-worker}")
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "urbanbrain" in scripts, "the image's ENTRYPOINT is the `urbanbrain` script"


def test_streams_can_be_scaled(services):
    streams = services["streams"]
    assert "ports" not in streams, "a fixed host port would stop a second replica"
    assert "container_name" not in streams and "hostname" not in streams
    assert "replicas" in streams.get("deploy", {})
    for name, svc in services.items():
        assert "container_name" not in svc, f"{name}: container_name breaks scaling"


# --- health and start order ---------------------------------------------------------------
def test_every_server_has_a_healthcheck(services):
    for name in SERVERS:
        check = services[name].get("healthcheck")
        assert check and not check.get("disable"), f"{name} has no healthcheck"
        test = check["test"]
        assert isinstance(test, list) and test[0] in ("CMD", "CMD-SHELL") and len(test) > 1
        for key in ("interval", "timeout", "retries"):
            assert key in check, f"{name}: healthcheck without {key}"


def test_depends_on_uses_existing_services_and_real_conditions(services):
    conditions = {"service_started", "service_healthy", "service_completed_successfully"}
    for name, svc in services.items():
        deps = svc.get("depends_on", {})
        assert isinstance(deps, dict), f"{name}: depends_on needs explicit conditions"
        for dep, spec in deps.items():
            assert dep in services, f"{name} depends on unknown service {dep}"
            cond = spec.get("condition")
            assert cond in conditions, f"{name} -> {dep}: condition {cond!r}"
            if cond == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits for {dep}'s health"
            if cond == "service_completed_successfully":
                assert services[dep].get("restart") == "no", f"{dep} must be a one-shot"
            if not svc.get("profiles"):
                assert not services[dep].get("profiles"), (
                    f"{name} always runs but depends on {dep}, which runs only with a profile"
                )
    for name in ("ingest", "streams"):
        deps = services[name]["depends_on"]
        assert deps["kafka-init"]["condition"] == "service_completed_successfully"
        assert deps["kafka"]["condition"] == "service_healthy"
    assert services["kafka-init"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    for name in ("ingest", "streams"):  # their retention policies exist before they write
        assert services[name]["depends_on"]["influx-init"]["condition"] == \
            "service_completed_successfully"
    assert services["influx-init"]["depends_on"]["influxdb"]["condition"] == "service_healthy"

    def visit(node: str, path: tuple[str, ...]) -> None:
        assert node not in path, f"depends_on cycle: {' -> '.join(path + (node,))}"
        for dep in services[node].get("depends_on", {}):
            visit(dep, path + (node,))

    for name in services:
        visit(name, ())


# --- secrets ------------------------------------------------------------------------------
def test_secrets_are_required_variables_never_literals(services):
    for name, svc in services.items():
        for key, value in env_mapping(svc).items():
            if not SECRET_NAME.search(key):
                continue
            m = REQUIRED_VAR.match(value)
            assert m, f"{name}.{key} must be ${{VAR:?message}}, not {value!r}"
            assert m.group("name") in m.group("msg"), f"{name}.{key}: name the variable"
        for text in strings(svc):
            assert not re.search(r"(?:^|\s)-P\s+(?![\"']?\$)", text), f"{name}: literal -P"
            assert not re.search(r"://[^/\s:@]+:[^@\s]+@", text), f"{name}: URL credentials"


def test_only_influx_init_gets_the_influx_admin(services):
    """CREATE/ALTER RETENTION POLICY need the admin; nothing that runs for long holds it."""
    for name, svc in services.items():
        env = env_mapping(svc)
        holds = [k for k, v in env.items() if "INFLUXDB_ADMIN" in str(v) or "ADMIN_USERNAME"
                 in k and k.startswith("URBANBRAIN_INFLUX")]
        if name in ("influxdb", "influx-init"):
            assert holds, f"{name} lacks the InfluxDB admin"
        else:
            assert not holds, f"{name} holds the InfluxDB admin: {holds}"


def test_no_secret_variable_has_a_default(compose):
    for name, ops in variables(compose).items():
        if SECRET_NAME.search(name):
            assert ops == {":?"}, f"${{{name}}} is used with {ops}: secrets are required"


def test_env_example_lists_every_variable_with_empty_secrets(compose):
    used = set(variables(compose))
    example = dotenv(ENV_EXAMPLE)
    missing = used - set(example)
    assert not missing, f".env.example lacks {sorted(missing)}"
    stale = set(example) - used
    assert not stale, f".env.example sets variables compose.yaml never uses: {sorted(stale)}"
    for key, value in example.items():
        if SECRET_NAME.search(key):
            assert value == "", f".env.example must leave {key} empty"
    gitignore = (ROOT / ".gitignore").read_text().split()
    assert ".env" in gitignore, ".env must be git-ignored"


def test_an_unfilled_env_refuses_to_start_and_a_filled_one_resolves(compose):
    example = dotenv(ENV_EXAMPLE)
    with pytest.raises(MissingVariable, match="PASSWORD"):
        interpolate_tree(compose, example)
    filled = filled_example_env()
    doc = interpolate_tree(compose, filled)
    streams = doc["services"]["streams"]
    assert int(streams["deploy"]["replicas"]) >= 1
    env = env_mapping(doc["services"]["ingest"])
    assert env["URBANBRAIN_MQTT_PASSWORD"] == filled["MQTT_INGEST_PASSWORD"]
    assert int(env["URBANBRAIN_KAFKA_PARTITIONS"]) >= int(filled["STREAMS_REPLICAS"])


# --- volumes and mounts -------------------------------------------------------------------
def test_named_volumes_are_declared_and_bind_mounts_exist(compose, services):
    declared = set(compose.get("volumes") or {})
    used = set()
    env = filled_example_env()
    for name, svc in services.items():
        for source, target, _ in volume_specs(interpolate_tree(svc, env)):
            if is_bind(source):
                path = (ROOT / source).resolve()
                assert path.is_relative_to(ROOT), f"{name}: {source} is outside the repo"
                if source not in CREATED_LATER:
                    assert path.exists(), f"{name}: bind source {source} does not exist"
            else:
                assert source in declared, f"{name}: volume {source!r} is not declared"
                used.add(source)
    assert declared == used, f"declared but unused volumes: {sorted(declared - used)}"


def test_config_is_mounted_read_only(services):
    mounts = {(s, t): ro for s, t, ro in volume_specs(services["mosquitto"])}
    assert mounts[("./deploy/mosquitto", "/mosquitto/config")]
    grafana = {t: (s, ro) for s, t, ro in volume_specs(services["grafana"])}
    assert grafana["/etc/grafana/provisioning"] == ("./dashboards/provisioning", True)
    assert grafana["/var/lib/grafana/dashboards"] == ("./dashboards/json", True)


# --- the image ----------------------------------------------------------------------------
def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, rest = line.partition(" ")
            out.append((op.upper(), rest.strip()))
    return out


def test_dockerfile_builds_a_non_root_image_from_pinned_python():
    assert DOCKERFILE.is_file(), "Dockerfile is missing"
    instructions = dockerfile_instructions()
    args = dict(a.split("=", 1) for op, a in instructions if op == "ARG" and "=" in a)
    base = args.get("PYTHON_IMAGE", "")
    assert re.fullmatch(r"python:3\.11-slim(?:-[a-z]+)?", base), f"base image {base!r}"
    stages = [rest for op, rest in instructions if op == "FROM"]
    assert all(s.split()[0] == "${PYTHON_IMAGE}" for s in stages), stages
    final = instructions[max(i for i, (op, _) in enumerate(instructions) if op == "FROM") :]
    users = [rest for op, rest in final if op == "USER"]
    assert users, "the runtime stage never switches to an unprivileged USER"
    assert users[-1].split(":")[0] not in ("root", "0"), f"runs as {users[-1]}"
    last_user = max(i for i, (op, _) in enumerate(final) if op == "USER")
    assert not [r for op, r in final[last_user:] if op == "RUN" and "pip install" in r]
    entrypoint = [rest for op, rest in final if op == "ENTRYPOINT"]
    assert entrypoint == ['["urbanbrain"]'], entrypoint
    installs = " ".join(r for op, r in final if op == "RUN" and "pip install" in r)
    assert "--constraint /tmp/build/constraints.txt" in installs
    assert "pip check" in installs


def test_constraints_pin_every_runtime_dependency():
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    pins = {}
    for line in CONSTRAINTS.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, sep, version = line.partition("==")
            assert sep, f"constraints.txt: {line!r} is not an exact pin"
            pins[canonicalize_name(name)] = version.strip()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for spec in project["dependencies"] + project["optional-dependencies"]["sim"]:
        req = Requirement(spec)
        pinned = pins.get(canonicalize_name(req.name))
        assert pinned, f"{req.name} is not pinned: run deploy/pin_constraints.py"
        assert req.specifier.contains(pinned, prereleases=True), (
            f"{req.name}=={pinned} violates {spec!r}: regenerate deploy/constraints.txt"
        )


class DockerIgnore:
    """The .dockerignore rules as Docker applies them: last matching pattern wins, and a
    pattern matching a directory matches everything below it."""

    def __init__(self, text: str) -> None:
        self.rules = []
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            negate = line.startswith("!")
            pattern = line.lstrip("!").strip("/")
            regex = "".join(
                ".*" if part == "**" else self._glob(part)
                for part in re.split(r"(\*\*)", pattern)
            )
            # `**/x` also matches a top-level x
            self.rules.append((re.compile(regex.replace(".*/", "(?:.*/)?") + "$"), negate))

    @staticmethod
    def _glob(part: str) -> str:
        return re.escape(part).replace(r"\*", "[^/]*").replace(r"\?", "[^/]")

    def excluded(self, path: str) -> bool:
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        result = False
        for regex, negate in self.rules:
            if any(regex.match(p) for p in prefixes):
                result = not negate
        return result


def test_build_context_holds_the_code_and_no_secrets():
    rules = DockerIgnore(DOCKERIGNORE.read_text())
    setup = ast.parse((ROOT / "setup.py").read_text())
    rooms = next(
        ast.literal_eval(node.value)
        for node in ast.walk(setup)
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "ROOMS"
    )
    needed = ["pyproject.toml", "setup.py", "README.md", "deploy/constraints.txt"]
    needed += [f"{folder}/__init__.py" for folder in rooms.values()]
    needed += ["ingest/decoders/base.py", "rules/default/city.yaml", "dashboards/json/x.json"]
    for path in needed:
        assert not rules.excluded(path), f".dockerignore keeps {path} out of the image build"
    for path in (
        ".env", ".git/config", ".venv/bin/python", "var/state.db", "tests/test_compose.py",
        "deploy/mosquitto/certs/server.key", "deploy/mosquitto/devices.passwd",
        "ingest/__pycache__/x.cpython-311.pyc", "ingest/.env", "streams/tls/client.key",
        "urbanbrain.egg-info/PKG-INFO",
    ):
        assert rules.excluded(path), f"{path} would be sent into the image build"


# --- mosquitto ----------------------------------------------------------------------------
def test_mosquitto_config_is_locked_down_and_persistent(services):
    conf = MOSQUITTO_DIR / "mosquitto.conf"
    assert conf_value(conf, "allow_anonymous") == "false"
    assert ("listener", "1883") in conf_lines(conf)
    assert conf_value(conf, "persistence") == "true"
    assert conf_value(conf, "max_inflight_messages") == "1000"
    # Enough to ride out ten minutes without ingest at the demo rate.
    rate = int(dotenv(ENV_EXAMPLE)["SIMULATOR_RATE"])
    assert int(conf_value(conf, "max_queued_messages")) >= rate * 600
    # Where the files live must agree with compose.yaml and entrypoint.sh.
    svc = services["mosquitto"]
    tmpfs = [t.split(":")[0] for t in svc["tmpfs"]]
    entrypoint = (MOSQUITTO_DIR / "entrypoint.sh").read_text()
    for key, name in (("password_file", "passwd"), ("acl_file", "acl")):
        path = conf_value(conf, key)
        assert path == f"{tmpfs[0]}/{name}", f"{key} {path} is not on the secrets tmpfs"
        assert f'"$secrets/{name}"' in entrypoint, f"entrypoint.sh does not write {name}"
    assert f"secrets={tmpfs[0]}" in entrypoint
    data = conf_value(conf, "persistence_location").rstrip("/")
    assert data in {t for s, t, _ in volume_specs(svc) if not is_bind(s)}, "not on a volume"
    text = conf.read_text()
    for line in ("#listener 8883", "#cafile ", "#certfile ", "#keyfile "):
        assert line in text, f"the commented TLS example lacks {line.strip()!r}"
    assert svc["entrypoint"][-1] == "/mosquitto/config/entrypoint.sh"
    assert "healthcheck.secret" in " ".join(svc["healthcheck"]["test"])


def parse_acl() -> tuple[list[tuple[str, str]], dict[str, list[tuple[str, str]]]]:
    patterns, users, current = [], {}, None
    for key, value in conf_lines(MOSQUITTO_DIR / "acl"):
        if key == "user":
            current = value
            users[current] = []
        elif key == "topic":
            access, _, topic = value.partition(" ")
            assert current, f"topic {value!r} before any user line grants anonymous clients"
            users[current].append((access, topic))
        elif key == "pattern":
            access, _, topic = value.partition(" ")
            patterns.append((access, topic))
        else:
            raise AssertionError(f"acl: unknown line {key} {value}")
    return patterns, users


def test_acl_confines_devices_and_services(services):
    from paho.mqtt.client import topic_matches_sub

    from urbanbrain.settings import DOMAINS

    patterns, users = parse_acl()

    def device_may_write(topic: str, user: str) -> bool:
        return any(
            access in ("write", "readwrite") and topic_matches_sub(p.replace("%u", user), topic)
            for access, p in patterns
        )

    for domain in DOMAINS:
        assert device_may_write(f"city/north/{domain}/loop/dev-1", "dev-1")
        assert device_may_write(f"city/north/{domain}/pack/gw-1", "gw-1")
        assert not device_may_write(f"city/north/{domain}/loop/dev-2", "dev-1")
    assert not device_may_write("city/alerts/north/high/dev-1", "dev-1")
    assert not device_may_write("city/alerts/dev-1", "dev-1")
    assert ("read", "city/#") in users["urbanbrain-ingest"]
    assert users["urbanbrain-alerts"] == [("write", "city/alerts/#")]
    assert all(a == "write" for a, _ in users["urbanbrain-simulator"])
    # Every MQTT user compose logs in as has an ACL entry and an account in make-passwd.sh.
    make_passwd = (MOSQUITTO_DIR / "make-passwd.sh").read_text()
    for name, svc in services.items():
        user = env_mapping(svc).get("URBANBRAIN_MQTT_USERNAME")
        if user:
            assert user in users, f"{name} logs in as {user}, unknown to the ACL"
            assert f"add_user {user} " in make_passwd, f"make-passwd.sh never creates {user}"
    assert "healthcheck" in users


def test_shell_scripts_parse():
    for script in MOSQUITTO_DIR.glob("*.sh"):
        subprocess.run(["sh", "-n", str(script)], check=True)


MOSQUITTO = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin")
# mosquitto is a declared test dependency (the Makefile installs it): no skip.
needs_mosquitto = pytest.mark.servers


def make_passwd(out: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env}
    return subprocess.run(
        ["sh", str(MOSQUITTO_DIR / "make-passwd.sh"), str(out)],
        env=full, capture_output=True, text=True, timeout=30,
    )


PASSWORDS = {
    "MQTT_INGEST_PASSWORD": "ingest pw with spaces",
    "MQTT_ALERTS_PASSWORD": "alerts-pw",
    "MQTT_SIMULATOR_PASSWORD": "sim$pw",
    "MQTT_CONSOLE_PASSWORD": "console-pw",
    "MQTT_HEALTHCHECK_PASSWORD": "hc-pw",
}


@needs_mosquitto
def test_make_passwd_refuses_empty_passwords_and_plaintext_devices(tmp_path):
    out = tmp_path / "passwd"
    result = make_passwd(out, **{**PASSWORDS, "MQTT_ALERTS_PASSWORD": ""})
    assert result.returncode != 0 and "MQTT_ALERTS_PASSWORD" in result.stderr
    assert not out.exists()
    devices = tmp_path / "devices.passwd"
    devices.write_text("tl-0007:plaintext\n")
    result = make_passwd(out, **PASSWORDS, MQTT_DEVICES_FILE=str(devices))
    assert result.returncode != 0 and "plaintext" in result.stderr
    assert not out.exists()
    result = make_passwd(out, **PASSWORDS)
    assert result.returncode == 0, result.stderr
    text = out.read_text()
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    for password in PASSWORDS.values():
        assert password not in text
    assert [line.split(":")[0] for line in text.splitlines()] == [
        "urbanbrain-ingest", "urbanbrain-alerts", "urbanbrain-simulator",
        "urbanbrain-console", "healthcheck",
    ]


@pytest.mark.servers
@needs_mosquitto
def test_production_broker_config_enforces_passwords_and_acl(tmp_path):
    """mosquitto itself, with deploy/mosquitto's config, password script and ACL."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from urbanbrain.localstack import ManagedProcess, free_port

    devices = tmp_path / "devices.passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(devices), "tl-0007", "device-pw"],
                   check=True, capture_output=True)
    result = make_passwd(tmp_path / "passwd", **PASSWORDS, MQTT_DEVICES_FILE=str(devices))
    assert result.returncode == 0, result.stderr
    shutil.copy(MOSQUITTO_DIR / "acl", tmp_path / "acl")
    port = free_port()
    conf = (MOSQUITTO_DIR / "mosquitto.conf").read_text()
    conf = conf.replace("/mosquitto/secrets/", f"{tmp_path}/")
    conf = re.sub(r"(?m)^listener 1883$", f"listener {port} 127.0.0.1", conf)
    conf = re.sub(r"(?m)^persistence true$", "persistence false", conf)
    (tmp_path / "mosquitto.conf").write_text(conf + "\nuser root\n")  # tmp_path is 0700

    def connect(user: str | None, password: str | None, cid: str) -> tuple[mqtt.Client, Any]:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=cid,
                             protocol=mqtt.MQTTv311)
        if user:
            client.username_pw_set(user, password)
        done, result = threading.Event(), {}
        client.on_connect = lambda c, u, f, rc, p=None: (result.setdefault("rc", rc), done.set())
        client.connect("127.0.0.1", port)
        client.loop_start()
        assert done.wait(5), f"no CONNACK for {user}"
        return client, result["rc"]

    def ready() -> bool:
        try:
            client, _ = connect(None, None, "probe")
        except OSError:
            return False
        client.loop_stop()
        client.disconnect()
        return True

    broker = ManagedProcess("mosquitto", [MOSQUITTO, "-c", str(tmp_path / "mosquitto.conf")],
                            tmp_path / "mosquitto.log", port)
    broker.start(ready, timeout=15)
    clients = []
    try:
        for user, password in ((None, None), ("urbanbrain-ingest", "wrong")):
            client, rc = connect(user, password, "intruder")
            clients.append(client)
            assert rc.is_failure, f"{user!r} with {password!r} was let in"

        received: list[str] = []
        sentinel = threading.Event()
        ingest, rc = connect("urbanbrain-ingest", PASSWORDS["MQTT_INGEST_PASSWORD"], "ingest")
        clients.append(ingest)
        assert not rc.is_failure

        def on_message(client, userdata, msg):
            received.append(msg.topic)
            if msg.topic.endswith("/sentinel"):
                sentinel.set()

        ingest.on_message = on_message
        subscribed = threading.Event()
        ingest.on_subscribe = lambda *a: subscribed.set()
        ingest.subscribe("city/#", qos=1)
        assert subscribed.wait(5)

        def publish(user: str, password: str, topics: list[str]) -> None:
            client, rc = connect(user, password, f"pub-{user}")
            clients.append(client)
            assert not rc.is_failure, f"{user} could not log in"
            for topic in topics:
                client.publish(topic, b"{}", qos=1).wait_for_publish(5)

        publish("tl-0007", "device-pw", [
            "city/north/traffic/loop/tl-0008",        # another device's id: denied
            "city/alerts/north/high/tl-0007",          # alerts namespace: denied
            "city/north/traffic/loop/tl-0007",         # its own: allowed
        ])
        publish("urbanbrain-simulator", PASSWORDS["MQTT_SIMULATOR_PASSWORD"], [
            "city/alerts/fake",                        # denied
            "city/south/water/pressure/wp-1",          # allowed
        ])
        publish("urbanbrain-alerts", PASSWORDS["MQTT_ALERTS_PASSWORD"], [
            "city/north/traffic/loop/tl-9",            # alerts user writes alerts only
            "city/alerts/north/sentinel",
        ])
        assert sentinel.wait(5), f"alerts never arrived; got {received}"
        assert received == [
            "city/north/traffic/loop/tl-0007",
            "city/south/water/pressure/wp-1",
            "city/alerts/north/sentinel",
        ]

        # The compose healthcheck's query: a retained $SYS topic, answered at once.
        health, rc = connect("healthcheck", PASSWORDS["MQTT_HEALTHCHECK_PASSWORD"], "health")
        clients.append(health)
        uptime = threading.Event()
        health.on_message = lambda c, u, m: uptime.set()
        health.subscribe("$SYS/broker/uptime", qos=0)
        assert uptime.wait(5), "healthcheck user cannot read $SYS/broker/uptime"
    finally:
        for client in clients:
            client.loop_stop()
            client.disconnect()
        broker.stop()
