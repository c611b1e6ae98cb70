"""Decoding, the translator module and SavedModel export."""
