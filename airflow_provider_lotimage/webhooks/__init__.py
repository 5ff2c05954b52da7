"""Webhook completion: the service says when a task finished, so the wait reads it at once.

* :mod:`.completion`: the operator mints a token per paid task and registers it before paying;
* :mod:`.app`: the api-server's route (``POST /lotimage-webhooks/<token>``) records a delivery;
* :mod:`.redis_store`: registrations and deliveries in Redis, where every triggerer sees them;
* :mod:`.listener` and :mod:`.hints`: a waiting trigger wakes on its delivery and reads once.

How to turn it on, and why each choice: ``docs/webhooks.md``.
"""
