"""Apache Airflow provider for LotImage: generate Midjourney pictures in batch."""

__version__ = "0.1.0"
