"""Airflow helpers of the operators, the sensor and the trigger: task state, budgets, failures, templating."""
