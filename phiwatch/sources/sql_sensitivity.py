"""`data_sensitivity_information` of a SQL audit record → PHI category, labels, top rank.

The field is an XML fragment, one `<sensitivity_attribute>` per distinct (label, information
type) the result set touched (next-wave.md §1). The documented form:

    <sensitivity_attributes max_rank="20" max_rank_desc="Medium">
      <sensitivity_attribute label="Confidential - GDPR" label_id="bf91e08c-..."
        information_type="Name" information_type_id="57845286-..." rank="20"
        rank_desc="Medium"/>
    </sensitivity_attributes>

and a short form without `max_rank`, `label_id`, `information_type_id` and `rank` (only
`label`, `information_type`, perhaps `rank_desc`). Both are read; so is a fragment without
the root element, and one cut short (the column is nvarchar(4000)): when the parser refuses
the text, the complete `<sensitivity_attribute .../>` elements are still read.

**Parsing is safe**: `defusedxml` is not a dependency, so the standard library's expat parser
is used with every DTD refused (no entity can be declared, so none can expand: no billion
laughs, no external entity), the text bounded in size, and only element attributes read.

**Category.** The information type decides: Health/Medical → clinical; National ID, SSN,
Name, Contact Info, Date Of Birth → demographic; Financial, Credit Card, Banking → financial;
anything else (Networking, Credentials, Other, a custom type) → none. Custom types whose name
says health (`Diagnosis`, `Clinical notes`, `Treatment`) count as clinical. With
several types, the most sensitive wins, in the order **clinical > financial > demographic >
none**: a result with names and diagnoses is health information about identified people
(HIPAA's core case); financial data outranks bare identifiers because it enables fraud, and a
name alone is the least. Information type ids are not used: the built-in ids in public
samples disagree (next-wave.md marks them [verify]), and both forms carry the name.

**Rank.** `max_rank` of the root, else the highest `rank`, else the highest rank named by
`rank_desc`/`max_rank_desc` (None 0, Low 10, Medium 20, High 30, Critical 40: SQL's own
scale), else unknown. Labels are kept distinct, in order of appearance, for rules that key on
`Highly Confidential`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from xml.parsers import expat
from xml.sax.saxutils import unescape

from phiwatch.model import PhiCategory

_MAX_CHARS = 65_536  # the column holds 4,000; a forged record must not cost more
_MAX_ATTRIBUTES = 256
_MAX_LABEL = 256

_RANK_NAMES = {"none": 0, "low": 10, "medium": 20, "high": 30, "critical": 40}
_ORDER: tuple[PhiCategory, ...] = ("none", "demographic", "financial", "clinical")
_TYPES: dict[str, PhiCategory] = {
    "health": "clinical",
    "medical": "clinical",
    "national id": "demographic",
    "ssn": "demographic",
    "name": "demographic",
    "contact info": "demographic",
    "date of birth": "demographic",
    "financial": "financial",
    "credit card": "financial",
    "banking": "financial",
}
_CLINICAL_WORDS = re.compile(r"health|medical|clinical|diagnos|treatment", re.IGNORECASE)
_ELEMENT = re.compile(r"<\s*sensitivity_attribute(?=[\s/>])([^<>]*)>", re.IGNORECASE)
_ROOT = re.compile(r"<\s*sensitivity_attributes(?=[\s/>])([^<>]*)>", re.IGNORECASE)
_ATTRIBUTE = re.compile(r"([A-Za-z_][\w.-]*)\s*=\s*(?:\"([^\"]*)\"|'([^']*)')")
_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>")


@dataclass(slots=True)
class Sensitivity:
    category: PhiCategory = "none"
    labels: list[str] = field(default_factory=list)
    rank: int | None = None


class _Refused(Exception):
    """The fragment declares a DTD or an entity: refused, never expanded."""


def parse_sensitivity(value: Any) -> Sensitivity:
    """Never raises: anything that is not such a fragment is no classification."""
    if not isinstance(value, str):
        return Sensitivity()
    if len(value) <= _MAX_CACHED_CHARS:
        # A table's classification repeats on every query of it: parsed once, copied out.
        found = _parse_cached(value)
        return Sensitivity(found.category, list(found.labels), found.rank)
    return _parse(value)


def _parse(value: str) -> Sensitivity:
    text = value.strip()
    if not text or "sensitivity_attribute" not in text.lower():
        return Sensitivity()
    if len(text) > _MAX_CHARS:
        text = text[:_MAX_CHARS]
    try:
        root, attributes = _parse_xml(text)
    except _Refused:
        return Sensitivity()
    except (expat.ExpatError, ValueError, RecursionError):
        root, attributes = _scan(text)
    return _summarise(root, attributes)


_MAX_CACHED_CHARS = 4096
_parse_cached = lru_cache(maxsize=1024)(_parse)


def _parse_xml(text: str) -> tuple[dict[str, str], list[dict[str, str]]]:
    if "<!" in text:  # a DOCTYPE, an ENTITY or a CDATA section: none belong here
        raise _Refused
    root: dict[str, str] = {}
    attributes: list[dict[str, str]] = []
    parser = expat.ParserCreate()

    def start(tag: str, attrs: dict[str, str]) -> None:
        lowered = tag.lower()
        if lowered == "sensitivity_attributes" and not root:
            root.update({k.lower(): v for k, v in attrs.items()})
        elif lowered == "sensitivity_attribute" and len(attributes) < _MAX_ATTRIBUTES:
            attributes.append({k.lower(): v for k, v in attrs.items()})

    def refuse(*_: Any) -> Any:
        raise _Refused

    parser.StartElementHandler = start
    # Belt and braces: the `<!` check above already keeps any DTD out.
    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.ExternalEntityRefHandler = refuse
    # A synthetic root makes the short form without <sensitivity_attributes> parse too.
    body = _DECLARATION.sub("", text, count=1)
    parser.Parse(f"<phiwatch>{body}</phiwatch>", True)
    return root, attributes


def _scan(text: str) -> tuple[dict[str, str], list[dict[str, str]]]:
    """The complete elements of a fragment the parser refused (cut short, stray `&`)."""
    root_match = _ROOT.search(text)
    root = _attrs(root_match.group(1)) if root_match else {}
    attributes = [_attrs(m.group(1)) for m in _ELEMENT.finditer(text)]
    return root, attributes[:_MAX_ATTRIBUTES]


def _attrs(text: str) -> dict[str, str]:
    return {
        m.group(1).lower(): unescape(m.group(2) if m.group(2) is not None else m.group(3))
        for m in _ATTRIBUTE.finditer(text)
    }


def _category(information_type: str | None) -> PhiCategory:
    if not information_type:
        return "none"
    key = " ".join(information_type.lower().split())
    known = _TYPES.get(key)
    if known:
        return known
    return "clinical" if _CLINICAL_WORDS.search(key) else "none"


def _rank(value: str | None) -> int | None:
    if value is None:
        return None
    text = value.strip()
    if text.isdigit() and len(text) <= 6:
        return int(text)
    return _RANK_NAMES.get(text.lower())


def _summarise(root: dict[str, str], attributes: list[dict[str, str]]) -> Sensitivity:
    result = Sensitivity()
    ranks: list[int] = []
    for attribute in attributes:
        category = _category(attribute.get("information_type"))
        if _ORDER.index(category) > _ORDER.index(result.category):
            result.category = category
        label = (attribute.get("label") or "").strip()[:_MAX_LABEL]
        if label and label not in result.labels:
            result.labels.append(label)
        for key in ("rank", "rank_desc"):
            rank = _rank(attribute.get(key))
            if rank is not None:
                ranks.append(rank)
                break
    top = _rank(root.get("max_rank"))
    if top is None:
        top = max(ranks) if ranks else _rank(root.get("max_rank_desc"))
    result.rank = top
    return result
