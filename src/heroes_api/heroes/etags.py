"""Entity tags for heroes (RFC 9110, section 8.8.3): ``"<id>-<version>"``, a strong validator.

``hero.version`` starts at 1 and grows by one with every change, so the tag changes exactly
when the hero does. ``If-None-Match`` compares weakly (``W/"7-2"`` matches ``"7-2"``),
``If-Match`` strongly (a weak tag never matches). Both headers are validated at the edge
against ``TAGS_PATTERN`` (``*`` or up to ``MAX_TAGS`` comma-separated quoted tags; anything
else is a 422 naming the header), so these functions only see well-formed lists.
"""

import re

MAX_TAGS = 16  # more in one header is a 422: a conditional write's statement stays small
_TAG = r'(W/)?"[!#-~]*"'  # RFC 9110 entity-tag, visible ASCII (no obs-text)
TAGS_PATTERN = rf"^[ \t]*(\*|{_TAG}([ \t]*,[ \t]*{_TAG}){{0,{MAX_TAGS - 1}}})[ \t]*$"
_ELEMENT = re.compile(r'(W/)?"([^"]*)"')
_OPAQUE = re.compile(r"(-?[0-9]{1,10})-([0-9]{1,10})")


def etag(hero_id: int, version: int) -> str:
    return f'"{hero_id}-{version}"'


def _tags(header: str) -> list[tuple[bool, int | None, int | None]] | None:
    """(weak, hero id, version) of each tag in a validated header, or None for ``*``; a tag not
    in this service's format has id and version None (it never matches)."""
    if header.strip() == "*":
        return None
    tags = []
    for weak, opaque in _ELEMENT.findall(header):
        parsed = _OPAQUE.fullmatch(opaque)
        hero_id, version = (int(parsed[1]), int(parsed[2])) if parsed else (None, None)
        tags.append((bool(weak), hero_id, version))
    return tags


def versions_to_match(if_match: str | None, hero_id: int) -> frozenset[int] | None:
    """The versions ``If-Match`` allows this hero to be at, or None when any version will do
    (no header, or ``*``: a hero that does not exist is still a 404)."""
    if if_match is None or (tags := _tags(if_match)) is None:
        return None
    return frozenset(
        version for weak, tag_id, version in tags if not weak and tag_id == hero_id and version
    )


def is_not_modified(if_none_match: str | None, hero_id: int, version: int) -> bool:
    """True when ``If-None-Match`` names the hero's current tag (or is ``*``): a GET answers 304."""
    if if_none_match is None:
        return False
    tags = _tags(if_none_match)
    return tags is None or any(tag[1:] == (hero_id, version) for tag in tags)
