"""GE Datex-Ohmeda S/5 and CARESCAPE computer interface (frames, physiological records, codec, descriptor)."""
