"""Real logins for a deployment: SimpleAuthManager with named users and passwords the harness knows.

By default the harness lets every visitor in as an admin (``simple_auth_manager_all_admins``),
which is all the REST client needs. A UI test that must sign in through the login form needs
the opposite: users with roles, and passwords it can type. The harness writes the passwords
file itself (SimpleAuthManager would otherwise invent passwords and only print them), fresh
random ones per deployment, so nothing guessable ever listens, even on loopback.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

#: SimpleAuthManager's roles, lowest to highest.
ROLES = ("viewer", "user", "op", "admin")


def _password() -> str:
    return secrets.token_urlsafe(12)


@dataclass(frozen=True)
class User:
    """One SimpleAuthManager user: name, role (one of :data:`ROLES`) and password."""

    name: str
    role: str
    password: str = field(default_factory=_password, repr=False)

    def __post_init__(self) -> None:
        if self.role.lower() not in ROLES:
            raise ValueError(f"role {self.role!r} of {self.name!r}: one of {ROLES}")
        if not self.name or ":" in self.name or "," in self.name:
            raise ValueError(f"user name {self.name!r} may not be empty or hold ':' or ','")


def default_users() -> tuple[User, ...]:
    """An admin (the harness's REST client signs in as it) and a read-only viewer."""
    return (User("admin", "admin"), User("viewer", "viewer"))


def admin_of(users: Sequence[User]) -> User:
    """The first admin: the REST client needs one to trigger runs and unpause DAGs."""
    for user in users:
        if user.role.lower() == "admin":
            return user
    raise ValueError("a deployment with logins needs an admin user for the harness's REST client")


def write_passwords(users: Sequence[User], path: Path) -> Path:
    """Write SimpleAuthManager's passwords file (JSON name -> password), readable by us alone."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        json.dump({user.name: user.password for user in users}, file)
        file.write("\n")
    return path


def login_config(users: Sequence[User], passwords_file: Path) -> dict[str, str]:
    """Airflow settings for SimpleAuthManager with these users, all-admins off, and their passwords."""
    admin_of(users)
    return {
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(f"{u.name}:{u.role}" for u in users),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(write_passwords(users, passwords_file)),
    }
