"""Masimo SET pulse oximeters: ASCII 1 serial output (sans-IO codec, label table, descriptor)."""
