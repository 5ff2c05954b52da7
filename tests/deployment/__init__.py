"""End-to-end tests against a real local Airflow deployment (see ``airflow_harness``)."""
