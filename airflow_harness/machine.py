"""Make each service of the distributed topology look like a machine of its own.

Two Celery workers or two triggerers on one box share ``/tmp``, ``$HOME`` and the host name,
which a real cluster's machines do not: the provider's ``host``-scope rate limiter keeps its state
in a file under ``tempfile.gettempdir()``, and Airflow records ``get_hostname()`` on job rows and
task instances. So each such service gets its own ``HOME`` and ``TMPDIR`` (the limiter's state
and lock file land in ``$TMPDIR/airflow-provider-lotimage/``) and its own host name.

The host name comes through ``[core] hostname_callable``, which must name an importable function
in the *services'* interpreter, where this package is not installed. So :func:`install_hostname_module`
copies this very file, which imports nothing but the standard library, into a folder the services
get on ``PYTHONPATH``, as the module :data:`MODULE`; :func:`hostname` reads the machine's name from
the environment.
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

#: Module name of this file's copy on the services' ``PYTHONPATH``.
MODULE = "airflow_harness_machine"
#: Environment variable holding the service's machine name.
MACHINE_VARIABLE = "AIRFLOW_HARNESS_MACHINE"


def hostname() -> str:
    """``[core] hostname_callable`` of the services: their machine's name, else the real one."""
    return os.environ.get(MACHINE_VARIABLE) or socket.getfqdn()


def install_hostname_module(site_dir: Path) -> str:
    """Copy this module into ``site_dir``; return the ``hostname_callable`` value naming it."""
    site_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(__file__, site_dir / f"{MODULE}.py")
    return f"{MODULE}.hostname"


def machine_env(root: Path, name: str) -> dict[str, str]:
    """Environment of a service on machine ``name``: its own home, temporary folder and host name."""
    home, tmp = root / name / "home", root / name / "tmp"
    home.mkdir(parents=True, exist_ok=True)
    tmp.mkdir(parents=True, exist_ok=True)
    return {"HOME": str(home), "TMPDIR": str(tmp), "TMP": str(tmp), "TEMP": str(tmp), MACHINE_VARIABLE: name}
