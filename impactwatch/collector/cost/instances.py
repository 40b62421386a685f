"""vCPUs and memory of the catalog's EC2 instance types, read once from EC2 and cached.

The catalog prices instance types by the hour (`cost.instance_types`); what an instance holds
comes from EC2, unless the catalog writes it (`vcpus:`, `memory_gb:`, for offline use). Answers
are cached for the life of the process: an instance type's shape never changes. A failed lookup
is one clear log line, and those instance types' pools and queues are priced at `cost.rates`.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

from impactwatch.catalog.model import Catalog, InstanceType
from impactwatch.collector.cost.aws import aws_error_reason, describe_aws_error

log = logging.getLogger(__name__)

Shape = tuple[Decimal, Decimal]  # (vCPUs, GiB of memory)
ClientFactory = Callable[[], Any]

_cache: dict[str, Shape | None] = {}  # None: EC2 knows no such instance type
_lock = threading.Lock()


class InstanceLookupError(RuntimeError):
    """EC2 did not answer; `reason` is one of `contract.RECONCILE_ERROR_REASONS`."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def default_ec2_client() -> Any:
    """An EC2 client for the environment's credentials and region (us-east-1 when unset)."""
    import boto3
    from botocore.config import Config

    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    config = Config(
        connect_timeout=5, read_timeout=15, retries={"max_attempts": 3, "mode": "standard"}
    )
    return boto3.client("ec2", region_name=region, config=config)


def _shapes(client: Any, names: list[str]) -> dict[str, Shape]:
    found: dict[str, Shape] = {}
    paginator = client.get_paginator("describe_instance_types")
    for page in paginator.paginate(InstanceTypes=names):
        for item in page.get("InstanceTypes", ()):
            vcpus = item.get("VCpuInfo", {}).get("DefaultVCpus")
            mib = item.get("MemoryInfo", {}).get("SizeInMiB")
            if vcpus and mib:
                found[item["InstanceType"]] = (Decimal(vcpus), Decimal(mib) / 1024)
    return found


def describe_instance_types(client: Any, names: Iterable[str]) -> dict[str, Shape]:
    """{instance type: (vCPUs, GiB)} for the `names` EC2 knows; unknown names are left out.

    Raises `InstanceLookupError` when EC2 cannot be asked (credentials, permissions,
    throttling, network)."""
    from botocore.exceptions import BotoCoreError, ClientError

    wanted = sorted(set(names))
    if not wanted:
        return {}
    try:
        try:
            return _shapes(client, wanted)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "InvalidInstanceType":
                raise
        found: dict[str, Shape] = {}  # one name is unknown: ask one by one to find the rest
        for name in wanted:
            try:
                found.update(_shapes(client, [name]))
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "InvalidInstanceType":
                    raise
        return found
    except (BotoCoreError, ClientError) as exc:
        raise InstanceLookupError(aws_error_reason(exc), describe_aws_error(exc)) from None


def used_unresolved(catalog: Catalog) -> list[str]:
    """Instance types the catalog prices pools or queues with but gives no shape for."""
    cost = catalog.cost
    used = {
        c.instance_type
        for c in (*cost.pool_rates.values(), *cost.queue_rates.values())
        if c.instance_type is not None
    }
    return sorted(
        n for n in used if n in cost.instance_types and not cost.instance_types[n].resolved
    )


def resolve_instance_types(
    catalog: Catalog, client_factory: ClientFactory = default_ec2_client
) -> tuple[Catalog, list[str]]:
    """The catalog with every used instance type's vCPUs and memory filled in from EC2, and
    the names EC2 does not know. EC2 is asked only for names not asked about before."""
    missing = used_unresolved(catalog)
    with _lock:
        ask = [n for n in missing if n not in _cache]
    if ask:
        found = describe_instance_types(client_factory(), ask)
        with _lock:
            _cache.update({n: found.get(n) for n in ask})
    with _lock:
        shapes = {n: shape for n in missing if (shape := _cache.get(n)) is not None}
    unknown = [n for n in missing if n not in shapes]
    if not shapes:
        return catalog, unknown
    types: dict[str, InstanceType] = dict(catalog.cost.instance_types)
    for name, (vcpus, memory) in shapes.items():
        types[name] = types[name].model_copy(update={"vcpus": vcpus, "memory_gb": memory})
    cost = catalog.cost.model_copy(update={"instance_types": types})
    return catalog.model_copy(update={"cost": cost}), unknown


def resolve_or_warn(
    catalog: Catalog, client_factory: ClientFactory = default_ec2_client
) -> Catalog:
    """`resolve_instance_types`, logging (never raising) what could not be resolved."""
    if not used_unresolved(catalog):
        return catalog
    try:
        resolved, unknown = resolve_instance_types(catalog, client_factory)
    except InstanceLookupError as exc:
        log.warning(
            "cost: cannot read instance types %s from EC2 (%s): their pools and queues are "
            "priced at cost.rates; grant ec2:DescribeInstanceTypes or write vcpus: and "
            "memory_gb: in the catalog",
            ", ".join(used_unresolved(catalog)),
            exc,
        )
        return catalog
    if unknown:
        log.warning(
            "cost: EC2 knows no instance type %s: check the name in cost.instance_types; "
            "priced at cost.rates meanwhile",
            ", ".join(unknown),
        )
    return resolved


def clear_cache() -> None:
    with _lock:
        _cache.clear()
