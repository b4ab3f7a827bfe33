"""raw_msg parsing: links, cards, mini programs, files, and XML that must be rejected."""

from __future__ import annotations

from consumers import rawmsg

LINK = (
    '<msg><appmsg appid="" sdkver="0"><title>Spring sale</title><des>Ten percent off</des><type>5</type>'
    "<url>https://mp.weixin.qq.com/s?__biz=f677&amp;mid=7814&amp;idx=1</url>"
    "<thumburl>http://mmbiz.qpic.cn/ef2c</thumburl></appmsg><fromusername>lily_33fed</fromusername></msg>"
)
CARD = '<msg username="wxid_52pn50yu449u6n" nickname="Card owner" alias="card_alias" certflag="0" sex="1"/>'
MINI_PROGRAM = (
    "<msg><appmsg><title>Order lunch</title><type>33</type><weappinfo><username>gh_bf836093418f@app</username>"
    "<appid>wx1234567890</appid><pagepath>pages/index.html</pagepath></weappinfo></appmsg></msg>"
)
FILE = (
    "<msg><appmsg><title>quote.xlsx</title><type>6</type><appattach><totallen>63309927</totallen></appattach>"
    "</appmsg></msg>"
)
BILLION_LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
    '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]><msg><appmsg><title>&lol3;</title>'
    "</appmsg></msg>"
)
EXTERNAL_ENTITY = '<?xml version="1.0"?><!DOCTYPE msg [<!ENTITY secret SYSTEM "file:///etc/passwd">]><msg>&secret;</msg>'


def test_link_fields_come_from_appmsg() -> None:
    fields = rawmsg.parse(49, LINK)

    assert fields.link_title == "Spring sale"
    assert fields.link_desc == "Ten percent off"
    assert fields.link_url == "https://mp.weixin.qq.com/s?__biz=f677&mid=7814&idx=1"
    assert fields.link_img_url == "http://mmbiz.qpic.cn/ef2c"
    assert fields.error == ""


def test_contact_card_fields_come_from_attributes() -> None:
    fields = rawmsg.parse(42, CARD)

    assert fields.card_wxid == "wxid_52pn50yu449u6n"
    assert fields.card_nickname == "Card owner"
    assert fields.card_alias == "card_alias"


def test_mini_program_fields_come_from_weappinfo() -> None:
    fields = rawmsg.parse(4901, MINI_PROGRAM)

    assert fields.miniprogram_title == "Order lunch"
    assert fields.miniprogram_username == "gh_bf836093418f@app"
    assert fields.miniprogram_appid == "wx1234567890"
    assert fields.miniprogram_pagepath == "pages/index.html"
    assert fields.link_url == ""


def test_file_name_and_size_come_from_appattach() -> None:
    fields = rawmsg.parse(4903, FILE)

    assert fields.file_name == "quote.xlsx"
    assert fields.file_size == 63309927


def test_entity_expansion_is_rejected() -> None:
    fields = rawmsg.parse(49, BILLION_LAUGHS)

    assert fields.error == "forbidden_xml"
    assert fields.link_title == ""


def test_external_entity_is_rejected() -> None:
    assert rawmsg.parse(49, EXTERNAL_ENTITY).error == "forbidden_xml"


def test_broken_xml_is_reported_not_raised() -> None:
    assert rawmsg.parse(49, "<msg><appmsg><title>cut").error == "invalid_xml"


def test_oversized_raw_msg_is_not_parsed() -> None:
    huge = "<msg>" + "a" * (rawmsg.MAX_PARSED_CHARS + 1) + "</msg>"

    assert rawmsg.parse(49, huge).error == "too_large"


def test_system_notice_text_is_not_parsed() -> None:
    assert rawmsg.parse(10000, '"Lily" joined the group chat').error == ""


def test_friend_request_attributes() -> None:
    raw = '<msg fromusername="wxid_diri51grue1sgj" encryptusername="v1_bf@stranger" content="hi" scene="30"/>'

    attributes = rawmsg.request_attributes(raw)

    assert attributes["fromusername"] == "wxid_diri51grue1sgj"
    assert attributes["scene"] == "30"
    assert rawmsg.request_attributes(BILLION_LAUGHS) == {}
