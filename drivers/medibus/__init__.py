"""Dräger MEDIBUS ventilators and anaesthesia machines (frames, data, session codec, descriptor)."""
