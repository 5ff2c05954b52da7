"""Operators that submit LotImage tasks (imagine, buttons) and save their pictures."""
