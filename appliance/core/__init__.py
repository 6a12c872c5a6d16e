"""The ground floor: canonical records, the clock protocol, backoff and the shared vocabularies.

drivers/, rules/ and ota/ may import from appliance only this package; it imports nothing
from the rest of the project.
"""
