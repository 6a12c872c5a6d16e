"""Philips IntelliVue monitors: MIB/RS-232 Data Export (wire, frames, session codec, label table, descriptor)."""
