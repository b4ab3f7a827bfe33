"""Fields of a message's raw_msg XML: links, contact cards, mini programs and files.

raw_msg comes from untrusted clients, so it is parsed with defusedxml, which rejects entity
declarations (the "billion laughs" expansion) and external entities instead of resolving them.
"""

from __future__ import annotations

from dataclasses import dataclass
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

# Larger raw_msg values are kept whole in the row but not parsed: real ones are a few KB.
MAX_PARSED_CHARS = 256 * 1024


@dataclass(frozen=True)
class RawMsgFields:
    """Fields that raw_msg adds to a message row; `error` is empty when raw_msg parsed."""

    link_title: str = ""
    link_desc: str = ""
    link_url: str = ""
    link_img_url: str = ""
    card_wxid: str = ""
    card_nickname: str = ""
    card_alias: str = ""
    miniprogram_title: str = ""
    miniprogram_username: str = ""
    miniprogram_appid: str = ""
    miniprogram_pagepath: str = ""
    file_name: str = ""
    file_size: int | None = None
    error: str = ""


# The result for a raw_msg that adds nothing: shared, because most messages are plain text.
NO_FIELDS = RawMsgFields()


def parse_xml(raw_msg: str) -> Element | str:
    """Return the root element, or the reason it could not be parsed (a short code)."""
    if len(raw_msg) > MAX_PARSED_CHARS:
        return "too_large"
    try:
        root: Element = fromstring(raw_msg, forbid_dtd=True)
    except DefusedXmlException:
        return "forbidden_xml"
    except ParseError:
        return "invalid_xml"
    return root


def _text(root: Element, path: str) -> str:
    node = root.find(path)
    return (node.text or "").strip() if node is not None else ""


def _to_int(text: str) -> int | None:
    return int(text) if text.strip().isdigit() else None


def parse(msg_type: int, raw_msg: str | None) -> RawMsgFields:
    """Extract the fields of `msg_type` from raw_msg; bad XML sets `error` instead of raising.

    Plain-text raw_msg (msg_type 10000, system notices) and empty raw_msg give empty fields.
    """
    if not raw_msg or msg_type == 10000 or not raw_msg.lstrip().startswith("<"):
        return NO_FIELDS
    root = parse_xml(raw_msg)
    if isinstance(root, str):
        return RawMsgFields(error=root)

    if msg_type == 42:
        return RawMsgFields(
            card_wxid=root.get("username", ""),
            card_nickname=root.get("nickname", ""),
            card_alias=root.get("alias", ""),
        )
    appmsg = root.find("appmsg") if root.tag != "appmsg" else root
    if appmsg is None:
        return NO_FIELDS
    return _appmsg_fields(msg_type, appmsg)


def _appmsg_fields(msg_type: int, appmsg: Element) -> RawMsgFields:
    """Mini program, file or link fields of an `<appmsg>` element."""
    if msg_type == 4901 or appmsg.find("weappinfo") is not None:
        return RawMsgFields(
            miniprogram_title=_text(appmsg, "title"),
            miniprogram_username=_text(appmsg, "weappinfo/username"),
            miniprogram_appid=_text(appmsg, "weappinfo/appid"),
            miniprogram_pagepath=_text(appmsg, "weappinfo/pagepath"),
        )
    if msg_type == 4903:
        return RawMsgFields(
            file_name=_text(appmsg, "title"),
            file_size=_to_int(_text(appmsg, "appattach/totallen")),
        )
    return RawMsgFields(
        link_title=_text(appmsg, "title"),
        link_desc=_text(appmsg, "des"),
        link_url=_text(appmsg, "url"),
        link_img_url=_text(appmsg, "thumburl"),
    )


def request_attributes(raw_msg: str | None) -> dict[str, str]:
    """Attributes of a friend request's `<msg .../>` (fromusername, fromnickname, scene ...); {} when unparsable."""
    if not raw_msg:
        return {}
    root = parse_xml(raw_msg)
    if isinstance(root, str):
        return {}
    return dict(root.attrib)
