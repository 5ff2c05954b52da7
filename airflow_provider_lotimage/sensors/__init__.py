"""The sensor that waits for a LotImage task to finish its picture."""
