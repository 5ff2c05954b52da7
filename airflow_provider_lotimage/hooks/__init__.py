"""The LotImage hook: the connection and the calls to the LotImage API."""
