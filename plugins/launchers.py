"""Built-in study launchers, registered through the same hook as a third-party launcher."""

from __future__ import annotations

from forgelab.core import hookimpl


@hookimpl
def register_launchers(register):
    register("local", "forgelab.core.launchers:LocalLauncher",
             description="a process pool on this machine (default)")
    register("ray", "forgelab.core.ray_launcher:RayLauncher",
             description="a Ray cluster, or Ray on this machine (pip install forgelab[ray])")
