"""The LotImage client: the API contract, one settings object, two transports, the retry loop, waiting.

Nothing below this package imports Airflow (``tests/test_layout.py`` proves it in a fresh
interpreter): it is what the hook, the operators, the sensor and the trigger build on.
"""
