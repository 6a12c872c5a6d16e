"""No module of appliance/, rules/ or ota/ names a device family: they ask the registry
(drivers/registry.py). Identifiers and strings (docstrings included) are checked;
comments may cite a device as an example."""

import io
import itertools
import re
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FAMILIES = re.compile(r"(?i)^(masimo|nonin|intellivue|datex|medibus|hl7|ble)\d*$")


def _words(text: str) -> list[str]:
    """Words of identifiers and strings, split at underscores, hyphens and camelCase
    (with neighbouring parts joined too: IntelliVueCodec -> Intelli, Vue, IntelliVue, ...)."""
    out = []
    text = re.sub(r"https?://\S+", "", text)  # a URL names a site (hl7.org's FHIR vocabularies), not a device family
    for word in re.findall(r"[A-Za-z0-9]+", text):
        parts = re.findall(r"[A-Z]?[a-z0-9]+|[A-Z0-9]+(?![a-z])", word)
        out += parts + [a + b for a, b in itertools.pairwise(parts)]
    return out


# The one site setting the tracker names by a family (issue 23: `allow_any_ble`): what it
# allows is the transport's (Transport.takes_any); appliance only carries the switch.
ALLOWED: frozenset[tuple[str, str]] = frozenset(
    {("appliance/config.py", "allow_any_ble"), ("appliance/config.py", '"allow_any_ble"')}
)


def _named(path: Path) -> list[str]:
    hits = []
    tokens = tokenize.generate_tokens(io.StringIO(path.read_text(encoding="utf-8")).readline)
    rel = str(path.relative_to(ROOT))
    for tok in tokens:
        if (rel, tok.string) in ALLOWED:
            continue
        if tok.type in (tokenize.NAME, tokenize.STRING):
            hits += [f"{path.relative_to(ROOT)}:{tok.start[0]}: {w}" for w in _words(tok.string) if FAMILIES.match(w)]
    return hits


def test_appliance_rules_and_ota_name_no_device_family():
    paths = [p for folder in ("appliance", "rules", "ota") for p in sorted((ROOT / folder).rglob("*.py"))]
    hits = [hit for path in paths for hit in _named(path)]
    assert hits == [], "\n".join(hits)


def test_the_check_sees_a_family_name():
    text = "make_codec(hl7_unframed); IntelliVueCodec; 'ble-glucose'; MEDIBUS; a table; enabled"
    assert [w.lower() for w in _words(text) if FAMILIES.match(w)] == ["hl7", "intellivue", "ble", "medibus"]
