"""CPU and memory a task asks for in its `executor_config`, read without Kubernetes' client.

Understood forms (anything else, or anything odd, reads as "no request"; this never raises):

- `{"pod_override": V1Pod}`, or the same pod as a plain dict: the pod's effective request, as
  Kubernetes' scheduler counts it: the sum over its containers, or the largest init
  container's when that is larger; pod-level `spec.resources.requests` win when present;
- `{"KubernetesExecutor": {"request_cpu": "500m", "request_memory": "1Gi"}}` (Airflow 1.10's
  form, still found in old DAGs);
- `{"resources": {"requests": {"cpu": "2", "memory": "4Gi"}}}`.

Quantities are Kubernetes' (`500m`, `2`, `1.5`, `2Gi`, `512Mi`, `1G`, `1e3`), parsed with the
standard library only: the plugin runs inside Airflow's processes and adds no dependency.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

_QUANTITY = re.compile(
    r"([+-]?(?:\d+\.?\d*|\.\d+))(?:([eE][+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E))?"
)
_SUFFIX = {
    "": Decimal(1),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
    "Pi": Decimal(2**50),
    "Ei": Decimal(2**60),
}
_MAX_CPU = Decimal(100_000)  # more cores than this is a typo, not a request
_MAX_MEMORY = Decimal(2**60)
_MAX_CONTAINERS = 100


def parse_quantity(value: object) -> Decimal | None:
    """A Kubernetes quantity as a number ("500m" -> 0.5, "2Gi" -> 2147483648), or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
        return number if number.is_finite() and number >= 0 else None
    if not isinstance(value, str) or len(value) > 64:
        return None
    match = _QUANTITY.fullmatch(value.strip())
    if match is None:
        return None
    try:
        number = Decimal(match[1] + (match[2] or "")) * _SUFFIX[match[3] or ""]
    except InvalidOperation:
        return None
    return number if number.is_finite() and number >= 0 else None


def _field(obj: Any, name: str) -> Any:
    """`obj[name]` for a mapping, else `obj.name` (kubernetes client objects), else None."""
    if obj is None:
        return None
    if isinstance(obj, dict):
        return obj.get(name)
    return getattr(obj, name, None)


def _requests(resources: Any) -> tuple[Decimal | None, Decimal | None]:
    requests = _field(resources, "requests")
    if not isinstance(requests, dict):
        return None, None
    return parse_quantity(requests.get("cpu")), parse_quantity(requests.get("memory"))


def _containers(spec: Any, name: str) -> list[Any]:
    found = _field(spec, name)
    return list(found)[:_MAX_CONTAINERS] if isinstance(found, list | tuple) else []


def _add(a: Decimal | None, b: Decimal | None) -> Decimal | None:
    return b if a is None else a if b is None else a + b


def _larger(a: Decimal | None, b: Decimal | None) -> Decimal | None:
    return b if a is None else a if b is None else max(a, b)


def pod_requests(pod: Any) -> tuple[Decimal | None, Decimal | None]:
    """(cores, bytes) a pod requests, counted as the Kubernetes scheduler does."""
    spec = _field(pod, "spec")
    cpu, memory = _requests(_field(spec, "resources"))  # pod-level resources (K8s 1.32+)
    if cpu is not None or memory is not None:
        return cpu, memory
    for container in _containers(spec, "containers"):
        c, m = _requests(_field(container, "resources"))
        cpu, memory = _add(cpu, c), _add(memory, m)
    for container in _containers(spec, "init_containers") + _containers(spec, "initContainers"):
        c, m = _requests(_field(container, "resources"))
        cpu, memory = _larger(cpu, c), _larger(memory, m)
    return cpu, memory


def _requests_of(config: Any) -> tuple[Decimal | None, Decimal | None]:
    if not isinstance(config, dict):
        return None, None
    pod = config.get("pod_override")
    if pod is not None:
        return pod_requests(pod)
    legacy = config.get("KubernetesExecutor")
    if isinstance(legacy, dict):
        return parse_quantity(legacy.get("request_cpu")), parse_quantity(
            legacy.get("request_memory")
        )
    return _requests(config.get("resources"))


def executor_config_requests(config: Any) -> tuple[float | None, int | None]:
    """(cores, memory bytes) requested by a task's `executor_config`; (None, None) when it
    requests nothing this module understands. Never raises."""
    try:
        cpu, memory = _requests_of(config)
    except Exception:  # a foreign object with surprising attributes: no request
        return None, None
    cores = float(cpu) if cpu is not None and cpu <= _MAX_CPU else None
    size = int(memory) if memory is not None and memory <= _MAX_MEMORY else None
    return cores, size
