"""The trigger that waits for a LotImage task in the triggerer."""
