"""What Airflow's masker is told about the key, and how it is asked about a text, on this Airflow."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from airflow_provider_lotimage.client.redaction import exception_shows, secret_forms
from airflow_provider_lotimage.exceptions import LotImageInputError
from airflow_provider_lotimage.utils.secrets import (
    aregister_secret,
    mask_known_secrets,
    refuse_known_secrets,
    register_secret,
    validate_prompt,
    validate_webhook,
)


@pytest.mark.parametrize("register", ["sync", "async"], ids=["worker", "triggerer"])
def test_every_form_of_the_key_is_masked_once_registered(register: str) -> None:
    """The sync registration (workers) and the async one (``version_compat.amask_secret``)."""
    key = f"sk-lotimage-{uuid.uuid4().hex}"
    texts = [f"key {key}", f"Authorization: Bearer {key}", f"Invalid header value b'Bearer {key}'"]
    assert [mask_known_secrets(text) for text in texts] == texts  # unknown yet
    if register == "sync":
        register_secret(key)
    else:
        asyncio.run(aregister_secret(key))
    assert [mask_known_secrets(text) for text in texts] == [
        "key ***",
        "Authorization: ***",
        "Invalid header value b'***'",
    ]


def test_refusal_names_the_field_and_shows_the_secret_masked() -> None:
    key = f"sk-lotimage-{uuid.uuid4().hex}"
    register_secret(key)
    with pytest.raises(LotImageInputError) as info:
        validate_prompt(f"a poster that reads {key}, in gold")
    message = str(info.value)
    assert message.startswith("prompt holds a secret that Airflow masks")
    assert "a poster that reads ***, in gold" in message and key not in message
    with pytest.raises(LotImageInputError, match=r"^webhook holds a secret"):
        validate_webhook(f"https://hooks.example.com/{key}")
    assert refuse_known_secrets("a poster that reads nothing", name="prompt") == "a poster that reads nothing"


def test_exception_chain_is_searched_for_every_form() -> None:
    key = f"sk-lotimage-{uuid.uuid4().hex}"
    forms = secret_forms(key)
    inner = UnicodeEncodeError("latin-1", f"Bearer {key}\u20ac", 43, 44, "ordinal not in range(256)")
    try:
        try:
            raise inner
        except UnicodeEncodeError:
            raise RuntimeError("wrapped") from None  # suppressed, but still the context
    except RuntimeError as outer:
        assert exception_shows(outer, forms)
    assert not exception_shows(RuntimeError("nothing here"), forms)
