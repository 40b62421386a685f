"""docker-compose.yaml (and its HA variant) checked without a Docker engine.

- Both files, and their merge, validate against the Compose Specification's JSON schema
  (tests/support/compose-spec.json, vendored from github.com/compose-spec/compose-spec,
  schema/compose-spec.json; Apache License 2.0).
- Every host path, build context, env file example and secret they name exists or is git-ignored.
- Every address one service uses to reach another agrees with the service it names: the configs
  that deploy/impactwatch/generate-configs.sh writes (run here with the compose environment),
  the database URLs of the env file examples against deploy/postgres/init.sql, the listener's
  and Airflow's own URLs. promtool and amtool check the generated configs.
- The Dockerfiles are pinned base images plus plain `pip install`s of this package.
- deploy/postgres/init.sql runs on a throwaway PostgreSQL and its reader can only read.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import psycopg
import pytest
import yaml
from sqlalchemy.engine import make_url

from impactwatch.airflow_listeners import config as listener_config
from impactwatch.collector.settings import CollectorSettings
from impactwatch.router.settings import RouterSettings

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / "tests" / "support" / "compose-spec.json"
BASE = "docker-compose.yaml"
HA = "docker-compose.ha.yaml"
INIT_SQL = REPO / "deploy" / "postgres" / "init.sql"
GENERATE = REPO / "deploy" / "impactwatch" / "generate-configs.sh"
CONFIG_SERVICE = "impactwatch-config"
DATABASE_URLS = (
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
    "IMPACTWATCH_AIRFLOW_DB",
    "IMPACTWATCH_STATE_DB",
    "IMPACTWATCH_ROUTER_STATE_DB",
)


# -- the compose model, as `docker compose config` would see it on a fresh checkout ----------------


def load(name: str) -> dict[str, Any]:
    return yaml.safe_load((REPO / name).read_text(encoding="utf-8"))


_VARIABLE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")


def interpolate(value: Any) -> Any:
    """Compose interpolation with an empty environment: `${X:-default}` -> default, `$$` -> `$`."""
    if isinstance(value, str):
        return _VARIABLE.sub(lambda m: "$" if m.group(0) == "$$" else (m.group(2) or ""), value)
    if isinstance(value, dict):
        return {k: interpolate(v) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v) for v in value]
    return value


REPLACED = {"command", "entrypoint", "test"}  # compose replaces these sequences when merging


def merge(base: Any, override: Any, key: str = "") -> Any:
    """Compose's merge of `-f base -f override`, for the shapes the HA file uses."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for k, v in override.items():
            merged[k] = merge(base[k], v, k) if k in base else copy.deepcopy(v)
        return merged
    if isinstance(override, list) and key not in REPLACED:
        raise NotImplementedError(f"merging sequence {key!r}: model it in merge() first")
    return copy.deepcopy(override)


def env_file_values(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, sep, value = line.partition("=")
            assert sep, f"{path}: {line!r} is not NAME=VALUE"
            values[name.strip()] = value.strip()
    return values


@dataclass
class Stack:
    name: str
    model: dict[str, Any]

    @property
    def services(self) -> dict[str, dict[str, Any]]:
        return self.model["services"]

    def env(self, service: str) -> dict[str, str]:
        """env_file (its committed .example) overlaid by `environment`, as compose does."""
        svc = self.services[service]
        values: dict[str, str] = {}
        for path in svc.get("env_file", []):
            values.update(env_file_values(REPO / f"{path}.example"))
        environment = svc.get("environment", {})
        assert isinstance(environment, dict), f"{service}: write environment as a mapping"
        values.update({k: "" if v is None else str(v) for k, v in environment.items()})
        return values

    def kind(self, service: str) -> str:
        svc = self.services[service]
        image = svc.get("image", "")
        command = svc.get("command")
        first = command[0] if isinstance(command, list) and command else command
        if image.startswith("impactwatch:"):
            return first if first in ("collector", "router") else "impactwatch"
        if image.startswith("impactwatch-airflow:"):
            return f"airflow-{first}"
        return image.split("/")[-1].split(":")[0]  # prometheus, alertmanager, grafana, postgres

    def of_kind(self, kind: str) -> set[str]:
        return {name for name in self.services if self.kind(name) == kind}

    def resolve(self, host: str) -> set[str]:
        """The services a host name reaches on the compose network (names and aliases)."""
        found = set()
        for name, svc in self.services.items():
            aliases = {
                alias
                for net in (svc.get("networks") or {}).values()
                for alias in (net or {}).get("aliases", [])
            }
            if host == name or host in aliases:
                found.add(name)
        assert found, f"{self.name}: no service answers to {host!r}"
        return found

    def flag(self, service: str, name: str) -> str | None:
        for arg in self.services[service].get("command") or []:
            if arg.startswith(f"--{name}="):
                return arg.split("=", 1)[1]
        return None

    def listen_port(self, service: str) -> int:
        kind, env = self.kind(service), self.env(service)
        if kind == "collector":
            return int(env["IMPACTWATCH_LISTEN"].rpartition(":")[2])
        if kind == "router":
            return int(env["IMPACTWATCH_ROUTER_LISTEN"].rpartition(":")[2])
        if kind in ("prometheus", "alertmanager"):
            return int((self.flag(service, "web.listen-address") or "").rpartition(":")[2])
        if kind == "airflow-api-server":
            return int(env.get("AIRFLOW__API__PORT", "8080"))
        if kind == "airflow-scheduler":  # its health check server
            assert env["AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK"] == "true"
            return int(env.get("AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT", "8974"))
        defaults = {"postgres": int(env.get("PGPORT", "5432")), "grafana": 3000}
        return defaults[kind]

    def mounts(self, service: str) -> dict[str, str]:
        """Container path -> source (host path or named volume) of the service's volumes."""
        found = {}
        for entry in self.services[service].get("volumes", []):
            source, target = entry.split(":")[:2]
            found[target] = source
        return found

    def secret_path(self, service: str, secret: str) -> str:
        for entry in self.services[service].get("secrets", []):
            source = entry if isinstance(entry, str) else entry["source"]
            if source == secret:
                target = None if isinstance(entry, str) else entry.get("target")
                return target or f"/run/secrets/{source}"
        raise AssertionError(f"{self.name}: {service} does not mount secret {secret}")


def build_stack(variant: str) -> Stack:
    model = load(BASE) if variant == "base" else merge(load(BASE), load(HA))
    return Stack(variant, interpolate(model))


@pytest.fixture(scope="module", params=["base", "ha"])
def stack(request: pytest.FixtureRequest) -> Stack:
    return build_stack(request.param)


@dataclass
class Generated:
    root: Path  # what the config service writes to its OUT_DIR
    out_dir: str  # OUT_DIR inside the containers

    def yaml(self, rel: str) -> dict[str, Any]:
        return yaml.safe_load((self.root / rel).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def generated(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Generated:
    """deploy/impactwatch/generate-configs.sh, run with the config service's environment."""
    env = stack.env(CONFIG_SERVICE)
    catalog = REPO / stack.mounts(CONFIG_SERVICE)[env["CATALOG"]]
    root = tmp_path_factory.mktemp(f"generated-{stack.name}")
    run_env = {**os.environ, **env, "CATALOG": str(catalog), "OUT_DIR": str(root)}
    run_env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    done = subprocess.run(
        ["sh", str(GENERATE)], env=run_env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return Generated(root, env["OUT_DIR"])


def host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


# -- (a) the Compose Specification -----------------------------------------------------------------


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    schema = json.loads(SPEC.read_text(encoding="utf-8"))
    jsonschema.Draft7Validator.check_schema(schema)
    assert "compose-spec/compose-spec" in schema["$comment"]  # provenance and licence
    return jsonschema.Draft7Validator(schema)


@pytest.mark.parametrize("name", ["base", "ha override", "ha merged"])
def test_compose_files_follow_the_compose_specification(
    name: str, validator: jsonschema.Draft7Validator
) -> None:
    model = {"base": load(BASE), "ha override": load(HA)}.get(name) or build_stack("ha").model
    errors = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(model)]
    assert not errors, "\n".join(errors)


def test_the_schema_check_catches_a_misspelt_key(validator: jsonschema.Draft7Validator) -> None:
    model = load(BASE)
    model["services"]["collector"]["healthchek"] = model["services"]["collector"]["healthcheck"]
    model["services"]["router"]["depends_on"]["postgres"]["condition"] = "service_ready"
    assert len(list(validator.iter_errors(model))) == 2


# -- (b) everything named exists in the repository, or is a git-ignored secret ---------------------


def git_ignored(path: str) -> bool:
    done = subprocess.run(["git", "-C", str(REPO), "check-ignore", "-q", path], check=False)
    return done.returncode == 0


def test_every_host_path_build_context_env_file_and_secret_is_there(stack: Stack) -> None:
    problems = []
    declared_volumes = set(stack.model.get("volumes") or {})
    for name, svc in stack.services.items():
        for source in stack.mounts(name).values():
            if source.startswith((".", "/")):
                if not (REPO / source).exists():
                    problems.append(f"{name}: mounts {source}, which is not in the repository")
            elif source not in declared_volumes:
                problems.append(f"{name}: volume {source} is not declared under volumes:")
        if "build" in svc:
            context = REPO / svc["build"]["context"]
            if not (context / svc["build"]["dockerfile"]).is_file():
                problems.append(f"{name}: no Dockerfile {svc['build']['dockerfile']}")
        for path in svc.get("env_file", []):
            if not (REPO / f"{path}.example").is_file():
                problems.append(f"{name}: env file {path} has no {path}.example")
            if not git_ignored(path):
                problems.append(f"{name}: env file {path} is not git-ignored")
        for entry in svc.get("secrets", []):
            source = entry if isinstance(entry, str) else entry["source"]
            if source not in stack.model.get("secrets", {}):
                problems.append(f"{name}: secret {source} is not declared under secrets:")
    secrets_readme = (REPO / "deploy" / "secrets" / "README.md").read_text(encoding="utf-8")
    for secret in stack.model["secrets"].values():
        if not git_ignored(secret["file"]):
            problems.append(f"secret file {secret['file']} is not git-ignored")
        if f"`{Path(secret['file']).name}`" not in secrets_readme:
            problems.append(f"deploy/secrets/README.md does not say how to make {secret['file']}")
    assert not problems, "\n".join(problems)


def settings_env_names(model: type[Any], prefix: str) -> set[str]:
    names = set()
    for field, info in model.model_fields.items():
        alias = info.validation_alias
        choices = getattr(alias, "choices", None)
        names |= {c for c in choices if c.isupper()} if choices else {prefix + field.upper()}
    return names


def airflow_config() -> dict[str, Any]:
    found = sorted(REPO.glob(".venv-airflow/lib/python*/site-packages/airflow/config_templates"))
    if not found:
        pytest.fail("no .venv-airflow: run `make setup`", pytrace=False)
    return yaml.safe_load((found[-1] / "config.yml").read_text(encoding="utf-8"))


def test_every_setting_in_env_and_env_files_is_one_the_program_reads(stack: Stack) -> None:
    """A misspelt variable is silently ignored by pydantic-settings and by Airflow: catch it."""
    known = {
        "collector": settings_env_names(CollectorSettings, "IMPACTWATCH_"),
        "router": settings_env_names(RouterSettings, "IMPACTWATCH_ROUTER_"),
    }
    listener = {listener_config.URL_ENV, listener_config.TOKEN_ENV, listener_config.TOKEN_FILE_ENV}
    airflow = airflow_config()
    problems = []
    for name in stack.services:
        kind = stack.kind(name)
        for var in stack.env(name):
            if kind in known and var.startswith(("IMPACTWATCH_", "SLACK_")):
                ok = var in known[kind]
            elif kind.startswith("airflow-") and var.startswith("IMPACTWATCH_"):
                ok = var in listener or var.startswith("IMPACTWATCH_LISTENER_")
            elif kind.startswith("airflow-") and var.startswith("AIRFLOW__"):
                section, _, option = var[len("AIRFLOW__") :].lower().partition("__")
                ok = option in airflow.get(section, {}).get("options", {})
            else:
                continue
            if not ok:
                problems.append(f"{stack.name}: {name} sets {var}, which nothing reads")
    assert not problems, "\n".join(problems)


# -- (c) every address agrees with the service it names --------------------------------------------


def assert_targets(stack: Stack, targets: list[str], kind: str, what: str) -> None:
    """`targets` reach every service of `kind` exactly once, each on the port it listens on."""
    reached = []
    for target in targets:
        host, port = host_port(target)
        (service,) = stack.resolve(host)  # one name, one replica: each is scraped on its own
        assert stack.kind(service) == kind, f"{what}: {target} is {service}, not a {kind}"
        assert port == stack.listen_port(service), f"{what}: {target}, but {service} listens on"
        reached.append(service)
    assert sorted(reached) == sorted(stack.of_kind(kind)), f"{what}: {targets}"


def test_prometheus_scrapes_every_collector_and_router(stack: Stack, generated: Generated) -> None:
    jobs = {
        job["job_name"]: [t for sc in job["static_configs"] for t in sc["targets"]]
        for job in generated.yaml("prometheus/prometheus.yml")["scrape_configs"]
    }
    assert_targets(stack, jobs["impactwatch-collector"], "collector", "scrape")
    assert_targets(stack, jobs["impactwatch-router"], "router", "scrape")


def test_prometheus_alerts_every_alertmanager(stack: Stack, generated: Generated) -> None:
    config = generated.yaml("prometheus/prometheus.yml")
    targets = [
        t
        for am in config["alerting"]["alertmanagers"]
        for sc in am["static_configs"]
        for t in sc["targets"]
    ]
    assert_targets(stack, targets, "alertmanager", "alerting")
    assert len(targets) == (2 if stack.name == "ha" else 1)


def test_alertmanager_webhook_reaches_the_routers_with_their_token(
    stack: Stack, generated: Generated
) -> None:
    config = generated.yaml("prometheus/alertmanager.yml")
    (receiver,) = [r for r in config["receivers"] if r["name"] == "impactwatch-router"]
    (hook,) = receiver["webhook_configs"]
    url = urlsplit(hook["url"])
    routers = stack.resolve(url.hostname or "")
    assert routers == stack.of_kind("router"), f"{url.hostname} reaches {routers}"
    assert url.path == "/alertmanager"
    for router in routers:
        assert url.port == stack.listen_port(router)
        token_file = stack.env(router)["IMPACTWATCH_WEBHOOK_TOKEN_FILE"]
        assert token_file == stack.secret_path(router, "impactwatch-webhook-token")
    for am in stack.of_kind("alertmanager"):
        credentials = hook["http_config"]["authorization"]["credentials_file"]
        assert credentials == stack.secret_path(am, "impactwatch-webhook-token")


def test_services_load_the_generated_files_from_the_shared_volume(
    stack: Stack, generated: Generated
) -> None:
    out = generated.out_dir
    volume = stack.mounts(CONFIG_SERVICE)[out]
    for service in stack.of_kind("prometheus") | stack.of_kind("alertmanager"):
        assert stack.mounts(service).get(out) == volume, f"{service} does not mount {out}"
    for service in stack.of_kind("prometheus"):
        assert stack.flag(service, "config.file") == f"{out}/prometheus/prometheus.yml"
    for service in stack.of_kind("alertmanager"):
        assert stack.flag(service, "config.file") == f"{out}/prometheus/alertmanager.yml"
    (grafana,) = stack.of_kind("grafana")
    assert stack.mounts(grafana).get(out) == volume
    assert stack.env(grafana)["GF_PATHS_PROVISIONING"] == f"{out}/grafana/provisioning"
    (provider,) = generated.yaml("grafana/provisioning/dashboards/impactwatch.yaml")["providers"]
    assert provider["options"]["path"] == f"{out}/grafana/dashboards"
    assert sorted((generated.root / "grafana" / "dashboards").glob("*.json"))


def test_grafana_data_source_is_prometheus(stack: Stack, generated: Generated) -> None:
    (source,) = generated.yaml("grafana/provisioning/datasources/impactwatch.yaml")["datasources"]
    url = urlsplit(source["url"])
    (service,) = stack.resolve(url.hostname or "")
    assert stack.kind(service) == "prometheus" and url.port == stack.listen_port(service)


def test_alertmanagers_gossip_with_each_other_only_in_ha(stack: Stack) -> None:
    ams = stack.of_kind("alertmanager")
    for am in ams:
        listen = stack.flag(am, "cluster.listen-address")
        peers = [a.split("=", 1)[1] for a in stack.services[am]["command"] if "cluster.peer=" in a]
        if stack.name == "base":
            assert listen == "" and not peers, f"{am}: a lone Alertmanager needs no gossip"
            continue
        reached = set()
        for peer in peers:
            host, port = host_port(peer)
            (other,) = stack.resolve(host)
            assert port == host_port(stack.flag(other, "cluster.listen-address") or "")[1]
            reached.add(other)
        assert reached == ams - {am}, f"{am} peers with {reached}"


def test_airflow_reaches_the_collector_and_its_own_api_server(stack: Stack) -> None:
    (collector,) = stack.of_kind("collector")
    (api_server,) = stack.of_kind("airflow-api-server")
    intake = stack.secret_path(collector, "impactwatch-intake-token")
    assert stack.env(collector)["IMPACTWATCH_TOKEN_FILE"] == intake
    for name in stack.services:
        if not stack.kind(name).startswith("airflow-"):
            continue
        env = stack.env(name)
        execution = urlsplit(env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
        assert stack.resolve(execution.hostname or "") == {api_server}
        assert execution.port == stack.listen_port(api_server) and execution.path == "/execution/"
        if not env.get(listener_config.URL_ENV):
            assert stack.services[name].get("restart") == "no", f"{name}: listener off"
            continue
        listener_url = urlsplit(listener_config.events_url(env[listener_config.URL_ENV]))
        assert stack.resolve(listener_url.hostname or "") == {collector}
        assert listener_url.port == stack.listen_port(collector)
        assert env[listener_config.TOKEN_FILE_ENV] == stack.secret_path(
            name, "impactwatch-intake-token"
        )


@dataclass
class InitSql:
    databases: dict[str, str]  # database -> owner
    passwords: dict[str, str]  # role -> the environment variable holding its password
    readers: dict[str, set[str]]  # role -> databases it may connect to without owning them


def parse_init_sql() -> InitSql:
    text = INIT_SQL.read_text(encoding="utf-8")
    env_of = dict(re.findall(r"\\getenv (\w+) (\w+)", text))
    passwords = {
        role: env_of[var]
        for role, var in re.findall(r"CREATE ROLE (\w+) LOGIN PASSWORD :'(\w+)'", text)
    }
    databases = dict(re.findall(r"CREATE DATABASE (\w+) OWNER (\w+);", text))
    readers: dict[str, set[str]] = {}
    for db, role in re.findall(r"GRANT CONNECT ON DATABASE (\w+) TO (\w+);", text):
        readers.setdefault(role, set()).add(db)
    return InitSql(databases, passwords, readers)


def test_database_urls_match_postgres_and_the_init_script(stack: Stack) -> None:
    init = parse_init_sql()
    (postgres,) = stack.of_kind("postgres")
    passwords = stack.env(postgres)
    urls = {
        (name, var): stack.env(name)[var]
        for name in stack.services
        for var in DATABASE_URLS
        if var in stack.env(name)
    }
    assert {var for _, var in urls} == set(DATABASE_URLS)
    airflow_db = None
    for (name, var), raw in urls.items():
        url = make_url(raw)
        where = f"{stack.name}: {name} {var}"
        assert stack.resolve(url.host or "") == {postgres}, where
        assert (url.port or 5432) == stack.listen_port(postgres), where
        assert url.username in init.passwords, f"{where}: init.sql creates no role {url.username}"
        assert url.password == passwords[init.passwords[url.username]], f"{where}: password"
        if var == "IMPACTWATCH_AIRFLOW_DB":
            # the collector reads Airflow's DB as a role that can connect but owns nothing
            assert url.database in init.readers.get(url.username, set()), where
            assert url.username not in init.databases.values(), where
        else:
            assert init.databases.get(url.database) == url.username, f"{where}: not the owner"
        if var == "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN":
            airflow_db = url.database
    collector_reads = {
        make_url(raw).database for (_, var), raw in urls.items() if var == "IMPACTWATCH_AIRFLOW_DB"
    }
    assert collector_reads == {airflow_db}, "the collector must read Airflow's own database"


# -- (d) images and Dockerfiles --------------------------------------------------------------------


def dockerfile(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))
    steps = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            instruction, _, args = line.strip().partition(" ")
            steps.append((instruction.upper(), args.strip()))
    return steps


def pinned(image: str) -> bool:
    _, _, tag = image.rpartition(":")
    return "/" not in tag and tag != "latest" and bool(re.search(r"\d", tag))


def makefile_airflow_version() -> str:
    match = re.search(r"^AIRFLOW_VERSION \?= (\S+)$", (REPO / "Makefile").read_text(), re.M)
    assert match
    return match.group(1)


def test_images_are_pinned_and_built_ones_tagged_by_version(stack: Stack) -> None:
    version = re.search(r'^version = "([^"]+)"', (REPO / "pyproject.toml").read_text(), re.M)
    assert version
    expected = {
        "deploy/Dockerfile": f"impactwatch:{version.group(1)}",
        "deploy/Dockerfile.airflow": f"impactwatch-airflow:{makefile_airflow_version()}",
    }
    for name, svc in stack.services.items():
        assert pinned(svc["image"]), f"{name}: {svc['image']} is not pinned to a version"
        if "build" in svc:
            assert svc["image"] == expected[svc["build"]["dockerfile"]], name


PIP_FLAGS = {"--no-cache-dir", "--disable-pip-version-check", "--no-deps"}


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.airflow"])
def test_dockerfiles_are_a_pinned_base_and_pip_installs_of_this_package(name: str) -> None:
    steps = dockerfile(REPO / "deploy" / name)
    bases = [args for instruction, args in steps if instruction == "FROM"]
    assert len(bases) == 1 and pinned(bases[0]), bases
    if name == "Dockerfile.airflow":
        assert bases == [f"apache/airflow:{makefile_airflow_version()}"]
    copied: dict[str, str] = {}  # repository path -> where it lands
    for instruction, args in steps:
        if instruction == "COPY":
            *sources, dest = [a for a in shlex.split(args) if not a.startswith("--")]
            for source in sources:
                assert (REPO / source).exists(), f"{name}: COPY {source}: not in the repository"
                copied[source] = dest + Path(source).name if dest.endswith("/") else dest
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    package_root = str(Path(copied["pyproject.toml"]).parent)
    needed = {pyproject["project"]["readme"], *pyproject_packages(pyproject)}
    for path in needed:
        assert copied.get(path) == f"{package_root}/{path}", f"{name}: {path} is not copied"
    runs = [shlex.split(args) for instruction, args in steps if instruction == "RUN"]
    assert runs, f"{name}: no pip install"
    for argv in runs:
        assert argv[:2] == ["pip", "install"], f"{name}: RUN {argv} is not a pip install"
        flags = {a for a in argv[2:] if a.startswith("-")}
        assert flags <= PIP_FLAGS, f"{name}: unexpected pip flags {flags - PIP_FLAGS}"
        assert [a for a in argv[2:] if not a.startswith("-")] == [package_root]
        assert ("--no-deps" in flags) == (name == "Dockerfile.airflow"), argv
    # The context is the repository root: its .dockerignore denies everything, then lets in
    # exactly what is copied (no .venv, .git or deploy/secrets in the build context).
    ignore = (REPO / "deploy" / f"{name}.dockerignore").read_text(encoding="utf-8")
    patterns = [p for p in ignore.splitlines() if p.strip() and not p.startswith("#")]
    assert patterns[0] == "*", f"{name}.dockerignore must start by ignoring everything"
    for source in copied:
        assert {f"!{source}", f"!{source}/"} & set(patterns), f"{source} is not let in"


def pyproject_packages(pyproject: dict[str, Any]) -> set[str]:
    includes = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    return {pattern.rstrip("*") for pattern in includes}


def test_every_long_running_service_has_a_healthcheck_on_its_own_port(stack: Stack) -> None:
    problems = []
    for name, svc in stack.services.items():
        if svc.get("restart") == "no":  # one-shots
            continue
        test = (svc.get("healthcheck") or {}).get("test")
        if not test:
            problems.append(f"{name}: no healthcheck")
            continue
        for url in re.findall(r"https?://[^\s'\"]+", " ".join(test)):
            port = urlsplit(url).port
            if port != stack.listen_port(name):
                problems.append(f"{name}: healthcheck {url}, but it listens on another port")
        for published in svc.get("ports", []):
            if int(published.rpartition(":")[2]) != stack.listen_port(name):
                problems.append(f"{name}: publishes {published}, not its listening port")
    for name, svc in stack.services.items():
        for dep, cond in (svc.get("depends_on") or {}).items():
            other = stack.services[dep]
            if cond["condition"] == "service_healthy" and "healthcheck" not in other:
                problems.append(f"{name} waits for {dep} to be healthy; it has no healthcheck")
            finishes = cond["condition"] == "service_completed_successfully"
            if finishes and other.get("restart") != "no":
                problems.append(f"{name} waits for {dep} to finish; it is not a one-shot")
    assert not problems, "\n".join(problems)


# -- (e) the HA pair -------------------------------------------------------------------------------


def test_ha_replicas_are_twins_with_their_own_data() -> None:
    ha = build_stack("ha")
    same = ("image", "build", "command", "env_file", "environment", "secrets", "healthcheck")
    router, router_2 = ha.services["router"], ha.services["router-2"]
    assert {k: router.get(k) for k in same} == {k: router_2.get(k) for k in same}
    assert ha.mounts("router") == ha.mounts("router-2")  # the catalog; state is in PostgreSQL
    am, am_2 = ha.services["alertmanager"], ha.services["alertmanager-2"]
    am_same = ("image", "secrets", "healthcheck")
    assert {k: am.get(k) for k in am_same} == {k: am_2.get(k) for k in am_same}

    def without_peer(command: list[str]) -> list[str]:
        return [arg for arg in command if not arg.startswith("--cluster.peer=")]

    assert without_peer(am["command"]) == without_peer(am_2["command"])
    data = ha.mounts("alertmanager")["/alertmanager"], ha.mounts("alertmanager-2")["/alertmanager"]
    assert data[0] != data[1], "each Alertmanager keeps its own silences and notification log"


# -- real tools on the generated configs -----------------------------------------------------------


def test_promtool_and_amtool_accept_the_generated_configs(generated: Generated) -> None:
    prom = subprocess.run(
        ["promtool", "check", "config", str(generated.root / "prometheus" / "prometheus.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert prom.returncode == 0, prom.stdout + prom.stderr
    am = subprocess.run(
        ["amtool", "check-config", str(generated.root / "prometheus" / "alertmanager.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert am.returncode == 0, am.stdout + am.stderr


# -- the init script on a real PostgreSQL ----------------------------------------------------------


def run_init_sql(base_url: str, drop: str = "") -> subprocess.CompletedProcess[str]:
    """psql on init.sql as the postgres image runs it, with postgres.env.example's variables."""
    (postgres,) = build_stack("base").of_kind("postgres")
    env = {**os.environ, **build_stack("base").env(postgres)}
    env.pop(drop, None)
    return subprocess.run(
        ["psql", "-v", "ON_ERROR_STOP=1", "--no-psqlrc", "-X", f"{base_url}/postgres",
         "-f", str(INIT_SQL)],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def initialised_postgres() -> Iterator[str]:
    """A throwaway cluster (roles are cluster-wide), init.sql run as the postgres image runs it."""
    from tests.support.postgres import ThrowawayCluster

    cluster = ThrowawayCluster.start()
    try:
        done = run_init_sql(cluster.url)
        assert done.returncode == 0, done.stdout + done.stderr
        yield cluster.url
    finally:
        cluster.stop()


def test_init_sql_reader_reads_tables_airflow_creates_later_and_nothing_else(
    initialised_postgres: str,
) -> None:
    def connect(role: str, db: str) -> psycopg.Connection:
        url = initialised_postgres.replace("postgres@", f"{role}@")
        return psycopg.connect(f"{url}/{db}", autocommit=True, connect_timeout=5)

    with connect("airflow", "airflow") as conn:  # as `airflow db migrate` would
        conn.execute("CREATE TABLE dag_run (id int PRIMARY KEY)")
        conn.execute("INSERT INTO dag_run VALUES (1)")
    with connect("impactwatch_ro", "airflow") as conn:
        assert conn.execute("SELECT count(*) FROM dag_run").fetchone() == (1,)
        conn.execute("SET default_transaction_read_only = off")  # it may; the grants still hold
        for statement in ("INSERT INTO dag_run VALUES (2)", "CREATE TABLE mine (i int)"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
    with pytest.raises(psycopg.OperationalError, match="permission denied"):
        connect("impactwatch_ro", "impactwatch")
    with connect("impactwatch", "impactwatch") as conn:
        conn.execute("CREATE TABLE iw_probe (i int)")


def test_init_sql_stops_before_creating_anything_without_a_password(
    initialised_postgres: str,
) -> None:
    done = run_init_sql(initialised_postgres, drop="IMPACTWATCH_RO_PASSWORD")
    assert done.returncode != 0
    assert "must be set: copy deploy/postgres.env.example" in done.stderr
    assert "CREATE ROLE" not in done.stdout  # it stopped first, not at "role already exists"
