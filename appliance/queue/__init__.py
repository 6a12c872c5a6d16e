"""Durable store-and-forward queue (SQLite WAL, sealed CBOR batches)."""

from appliance.queue.records import decode_batch, encode_batch
from appliance.queue.seal import KeyError_, Sealer, load_or_create_key
from appliance.queue.store import RecordClass, Store, StoreError, StoreStats, StoreWriteError

__all__ = [
    "KeyError_",
    "RecordClass",
    "Sealer",
    "Store",
    "StoreError",
    "StoreStats",
    "StoreWriteError",
    "decode_batch",
    "encode_batch",
    "load_or_create_key",
]
