"""The deployment's REST API v2 client: parse, unpause, trigger and follow DAG runs.

Talking to the api-server over HTTP, as a user would, keeps Airflow out of the calling process
(which has its own AIRFLOW_HOME and configuration). Every wait also checks that the services it
depends on are still running, so a crashed service fails the wait at once with its log, instead
of after the timeout.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import requests

from . import metadata
from .errors import DeploymentError
from .logs import Logs

_FINAL_RUN_STATES = frozenset({"success", "failed"})

#: A token this close to its expiry is replaced before use rather than after a 401.
_TOKEN_MARGIN = 30.0


def jwt_expiry(token: str) -> float | None:
    """The ``exp`` claim of a JWT (epoch seconds), read without checking the signature.

    Only to know when to sign in again: the api-server checks the token, not us.
    """
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return float(claims["exp"])
    except (IndexError, KeyError, TypeError, ValueError, binascii.Error):
        return None


@dataclass
class RunResult:
    """Final state of a DAG run, plus every task state seen while polling (to prove deferral)."""

    dag_id: str
    run_id: str
    state: str
    task_states: dict[str, str | None]
    observed_states: dict[str, list[str | None]] = field(default_factory=dict)
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        """Whether the run succeeded."""
        return self.state == "success"

    def saw_state(self, task_key: str, state: str) -> bool:
        """Whether polling ever saw ``task_key`` in ``state`` (e.g. ``deferred``)."""
        return state in self.observed_states.get(task_key, [])


def _token_refused(resp: requests.Response) -> bool:
    """Whether the api-server refused the token itself: 401, or 403 "Invalid JWT token" (what
    Airflow 3 answers for an expired or malformed one), as opposed to a permission denied."""
    return resp.status_code == 401 or (resp.status_code == 403 and "Invalid JWT" in resp.text)


class RestClient:
    """REST API v2 of one api-server.

    ``check_running(names)`` raises :class:`DeploymentError` if one of the named services has
    exited; ``logs`` supplies the dag-processor's tail when a DAG never shows up.
    ``credentials`` (user name, password) make it sign in with ``POST /auth/token``, for a
    deployment with real logins (see :mod:`.auth`); without them it relies on all-admins.
    """

    def __init__(
        self,
        api_url: str,
        logs: Logs,
        check_running: Callable[[Sequence[str]], None],
        credentials: tuple[str, str] | None = None,
    ) -> None:
        self.api_url = api_url
        self._logs = logs
        self._check_running = check_running
        self._credentials = credentials
        self._http = requests.Session()
        self._token: str | None = None
        self._token_expiry: float | None = None

    def close(self) -> None:
        """Drop pooled connections (the session still works afterwards, on new connections)."""
        self._http.close()

    def healthy(self) -> bool:
        """Whether the api-server answers its health endpoint."""
        try:
            resp = self._http.get(f"{self.api_url}/api/v2/monitor/health", timeout=5)
        except requests.RequestException:
            return False
        return resp.status_code == 200

    def token(self, refresh: bool = False) -> str:
        """A JWT for the REST API.

        With ``simple_auth_manager_all_admins`` the SimpleAuthManager hands one out on a plain
        ``GET /auth/token`` (its middleware would even add one to unauthenticated calls; sending
        the token keeps this working if that middleware changes). With credentials it signs in
        with them instead. A token is replaced shortly before its ``exp``, and on a 401 (:meth:`api`).
        """
        if self._token is None or refresh or self._token_expiring():
            self._token = self._new_token()
            self._token_expiry = jwt_expiry(self._token)
        return self._token

    def _token_expiring(self) -> bool:
        return self._token_expiry is not None and time.time() > self._token_expiry - _TOKEN_MARGIN

    def _new_token(self) -> str:
        """Sign in: with the credentials when there are any, else the all-admins ``GET``."""
        url = f"{self.api_url}/auth/token"
        if self._credentials is None:
            resp = self._http.get(url, timeout=10)
        else:
            name, password = self._credentials
            resp = self._http.post(url, json={"username": name, "password": password}, timeout=10)
        if resp.status_code not in (200, 201):
            method = resp.request.method
            raise DeploymentError(f"{method} /auth/token -> {resp.status_code}: {resp.text[:500]}")
        return str(resp.json()["access_token"])

    def api(self, method: str, path: str, json_body: Any = None, ok: Sequence[int] = (200,)) -> Any:
        """Call the REST API v2 (``path`` relative to ``/api/v2``); return the decoded JSON.

        A call the api-server turns down for its token is made once more with a new one.
        """
        url = f"{self.api_url}/api/v2/{path.lstrip('/')}"
        for attempt in range(2):
            headers = {"Authorization": f"Bearer {self.token(refresh=attempt > 0)}"}
            resp = self._http.request(method, url, json=json_body, headers=headers, timeout=30)
            if not _token_refused(resp):
                break
        if resp.status_code not in ok:
            raise DeploymentError(f"{method} {url} -> {resp.status_code}: {resp.text[:1000]}")
        return resp.json() if resp.content else None

    def wait_for_dag(self, dag_id: str, timeout: float = 90.0) -> dict[str, Any]:
        """Wait until the dag-processor has serialized ``dag_id``; fail early on an import error."""
        deadline = time.monotonic() + timeout
        while True:
            self._check_running(["api-server", "dag-processor"])
            url = f"{self.api_url}/api/v2/dags/{dag_id}"
            resp = self._http.get(url, headers={"Authorization": f"Bearer {self.token()}"}, timeout=10)
            if resp.status_code == 200:
                dag = dict(resp.json())
                # The dag row may briefly exist before its serialized version does.
                details = self._http.get(
                    f"{url}/details", headers={"Authorization": f"Bearer {self.token()}"}, timeout=10
                )
                if details.status_code == 200:
                    return dag
            errors = self.api("GET", "importErrors").get("import_errors", [])
            if errors:
                raise DeploymentError(f"DAG import errors: {json.dumps(errors, indent=1)[:4000]}")
            if time.monotonic() > deadline:
                tail = self._logs.log_tail("dag-processor", 40)
                raise DeploymentError(f"DAG {dag_id} not parsed after {timeout:.0f}s\n{tail}")
            time.sleep(0.5)

    def unpause(self, dag_id: str) -> None:
        """Unpause a DAG (new DAGs start paused)."""
        self.api("PATCH", f"dags/{dag_id}", {"is_paused": False})

    def trigger(self, dag_id: str, conf: Mapping[str, Any] | None = None, run_id: str | None = None) -> str:
        """Trigger a manual run now; return its run_id."""
        body: dict[str, Any] = {"logical_date": None, "conf": dict(conf or {})}
        if run_id:
            body["dag_run_id"] = run_id
        run = self.api("POST", f"dags/{dag_id}/dagRuns", body)
        return str(run["dag_run_id"])

    def run_state(self, dag_id: str, run_id: str) -> str:
        """Current state of a DAG run."""
        return str(self.api("GET", f"dags/{dag_id}/dagRuns/{run_id}")["state"])

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        """Current state of each task instance of a run, keyed ``task_id`` or ``task_id[i]``."""
        data = self.api("GET", f"dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=1000")
        states: dict[str, str | None] = {}
        for ti in data["task_instances"]:
            index = ti.get("map_index", -1)
            states[metadata.task_key(ti["task_id"], -1 if index is None else index)] = ti.get("state")
        return states

    def wait_for_task_state(
        self, dag_id: str, run_id: str, task_key: str, states: str | Sequence[str], timeout: float = 60.0
    ) -> str:
        """Wait until a task is in one of ``states`` (e.g. ``deferred``); return that state."""
        wanted = {states} if isinstance(states, str) else set(states)
        deadline = time.monotonic() + timeout
        while True:
            state = self.task_states(dag_id, run_id).get(task_key)
            if state in wanted:
                return str(state)
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{task_key} still {state!r} after {timeout:.0f}s, wanted {sorted(wanted)}"
                )
            time.sleep(0.25)

    def wait_for_run(
        self, dag_id: str, run_id: str, timeout: float = 120.0, poll_interval: float = 0.5
    ) -> RunResult:
        """Poll a run until it is final; record every task state seen on the way.

        Raises ``TimeoutError`` (with the last states) rather than returning a non-final run.
        """
        t0 = time.monotonic()
        observed: dict[str, list[str | None]] = {}
        while True:
            self._check_running(["api-server", "scheduler"])
            state = self.run_state(dag_id, run_id)
            states = self.task_states(dag_id, run_id)
            for key, ti_state in states.items():
                seen = observed.setdefault(key, [])
                if not seen or seen[-1] != ti_state:
                    seen.append(ti_state)
            if state in _FINAL_RUN_STATES:
                return RunResult(dag_id, run_id, state, states, observed, time.monotonic() - t0)
            if time.monotonic() - t0 > timeout:
                raise TimeoutError(f"run {dag_id}/{run_id} still {state} after {timeout:.0f}s: {states}")
            time.sleep(poll_interval)

    def run_dag(
        self,
        dag_id: str,
        conf: Mapping[str, Any] | None = None,
        timeout: float = 120.0,
        parse_timeout: float = 90.0,
    ) -> RunResult:
        """Wait for the DAG to be parsed, unpause it, trigger it and wait for the run to finish."""
        self.wait_for_dag(dag_id, timeout=parse_timeout)
        self.unpause(dag_id)
        run_id = self.trigger(dag_id, conf)
        return self.wait_for_run(dag_id, run_id, timeout=timeout)
