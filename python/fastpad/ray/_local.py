"""`init_ray`: a Ray instance whose ports listen on this machine only (or a cluster's)."""

from __future__ import annotations

import os
from typing import Any

__all__ = ["init_ray"]


def init_ray(
    address: str | None = None,
    *,
    dashboard: bool = False,
    num_cpus: int | None = None,
    **options: Any,
) -> Any:
    """``ray.init`` with a local instance kept on 127.0.0.1 and no dashboard unless asked.

    A local instance (no `address`) takes 127.0.0.1 as its node address, so every port Ray
    opens listens on loopback only (checked: a RuntimeError otherwise), and starts the
    dashboard only when `dashboard` is True (on 127.0.0.1 too). With an `address` (``"auto"``,
    ``"ray://..."``) the cluster keeps its own settings. A Ray already initialized in this
    process is left as it is.

    Parameters
    ----------
    address : str, optional
        A cluster to connect to; None starts a local instance.
    dashboard : bool, default False
        Start Ray's dashboard (local instance only).
    num_cpus : int, optional
        CPUs of a local instance (default: Ray's, every core).
    **options
        Other ``ray.init`` arguments.

    Returns
    -------
    ray.RuntimeContext or ray's init result
        What ``ray.init`` returns (the runtime context when Ray was already initialized).

    Raises
    ------
    RuntimeError
        The local instance took another node address than 127.0.0.1 (it is shut down).

    Notes
    -----
    Ray 2.60 replaces ``ray.init(_node_ip_address="127.0.0.1")`` by the machine's routable
    address, and its servers listen on all interfaces unless the node address is loopback. Its
    switch for single-machine instances (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, the default
    on macOS and Windows) keeps the node on 127.0.0.1: set here for the processes Ray starts
    and, since Ray read it when imported, for this one. One port stays on all interfaces: each
    Ray Serve replica's internal gRPC server, which Ray binds to ``[::]`` itself (firewall it on
    a shared machine).
    """
    import ray

    if ray.is_initialized():
        return ray.get_runtime_context()
    if address is not None:
        return ray.init(address=address, num_cpus=num_cpus, **options)
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    try:
        from ray._private import ray_constants

        ray_constants.ENABLE_RAY_CLUSTER = False
    except ImportError:  # another Ray layout: the environment variable alone, checked below
        pass
    context = ray.init(
        address="local",
        num_cpus=num_cpus,
        include_dashboard=dashboard,
        dashboard_host="127.0.0.1",
        **options,
    )
    node_address = ray.util.get_node_ip_address()
    if node_address != "127.0.0.1":
        ray.shutdown()
        raise RuntimeError(
            f"fastpad.ray.init_ray: the local Ray instance took {node_address} as its address, "
            "not 127.0.0.1: its ports would listen beyond this machine"
        )
    return context
