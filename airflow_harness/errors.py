"""The one exception the harness raises for a deployment that misbehaves.

Its own module because the REST client, the metadata readers and the deployment all raise it,
and none of them should have to import another just for the exception.
"""

from __future__ import annotations


class DeploymentError(RuntimeError):
    """A service failed to start, died, or the API refused a request."""
