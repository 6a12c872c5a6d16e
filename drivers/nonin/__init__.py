"""Nonin pulse oximeters: serial data formats #2, #7, #8 (codec, format sniffer, label table, descriptor)."""
