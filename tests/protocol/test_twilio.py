"""Twilio Media Streams wire types: the real 2020 capture, field-naming errors, outbound shapes."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from boba_proto import twilio
from boba_proto.errors import RemoteProtocolError
from boba_proto.twilio import (
    Connected,
    Dtmf,
    DtmfInfo,
    Mark,
    MarkInfo,
    Media,
    MediaFormat,
    MediaInfo,
    SendClear,
    SendMark,
    SendMedia,
    Start,
    StartInfo,
    Stop,
    StopInfo,
    UnknownTwilioEvent,
)

DATA = Path(__file__).parent / "data"
SID_2020 = "9e7ee906-377b-408f-a852-eebfb834422a"


def _lines(name: str) -> list[str]:
    return [line for line in (DATA / name).read_text().splitlines() if line.strip()]


INBOUND_2020 = _lines("twilio-2020-inbound.jsonl")
MEDIA_OK = {
    "event": "media",
    "sequenceNumber": "4",
    "media": {"track": "inbound", "chunk": "3", "timestamp": "95", "payload": "/w=="},
    "streamSid": "MZ00",
}


def _frame(obj: object) -> str:
    return json.dumps(obj)


def _rpe(frame: str | bytes) -> str:
    with pytest.raises(RemoteProtocolError) as info:
        twilio.decode(frame)
    return info.value.message


# --- the real 2020 capture ------------------------------------------------------------


def test_2020_capture_decodes_in_order() -> None:
    events = [twilio.decode(line) for line in INBOUND_2020]
    assert [type(e) for e in events] == [Connected, Start, Media, Mark, Mark, Mark]


def test_2020_connected() -> None:
    assert twilio.decode(INBOUND_2020[0]) == Connected(protocol="Call", version="1.0.0")


def test_2020_start_keeps_every_value() -> None:
    start = twilio.decode(INBOUND_2020[1])
    assert start == Start(
        stream_sid=SID_2020,
        sequence_number="1",
        start=StartInfo(
            stream_sid=SID_2020,
            call_sid="CA3c95a2a6bba5fde93a5dea01e388e8fb",
            account_sid="AC18fbd524d33614fba208030751dffdca",
            tracks=["inbound"],
            media_format=MediaFormat(encoding="audio/x-mulaw", sample_rate=8000, channels=1),
            custom_parameters={"aCutomParameter": "aCustomValue that was set in TwiML"},
        ),
    )


def test_2020_media_payload_is_160_raw_bytes() -> None:
    media = twilio.decode(INBOUND_2020[2])
    assert isinstance(media, Media)
    raw_b64 = json.loads(INBOUND_2020[2])["media"]["payload"]
    assert media.media.payload == base64.b64decode(raw_b64)
    assert len(media.media.payload) == 160
    assert media.media.track == "inbound"
    assert (media.media.chunk_number, media.media.timestamp_ms) == (1, 52)
    assert media.sequence_number == "2"


def test_2020_mark_echoes() -> None:
    marks = [twilio.decode(line) for line in INBOUND_2020[3:]]
    assert marks == [
        Mark(stream_sid=SID_2020, sequence_number=seq, mark=MarkInfo(name=f"Repeat message {i}"))
        for i, seq in enumerate(["103", "154", "205"])
    ]


def test_2020_bytes_and_str_frames_decode_alike() -> None:
    for line in INBOUND_2020:
        assert twilio.decode(line.encode()) == twilio.decode(line)


def test_outbound_marks_match_what_the_2020_server_sent() -> None:
    for i, line in enumerate(_lines("twilio-2020-outbound-marks.jsonl")):
        ours = twilio.encode(SendMark(stream_sid=SID_2020, name=f"Repeat message {i}"))
        assert json.loads(ours) == json.loads(line)
        assert twilio.decode_outbound(line) == SendMark(
            stream_sid=SID_2020, name=f"Repeat message {i}"
        )


# --- the other documented events ------------------------------------------------------


def test_dtmf() -> None:
    frame = _frame(
        {
            "event": "dtmf",
            "streamSid": "MZ1",
            "sequenceNumber": "5",
            "dtmf": {"track": "inbound_track", "digit": "#"},
        }
    )
    assert twilio.decode(frame) == Dtmf(
        stream_sid="MZ1", sequence_number="5", dtmf=DtmfInfo(track="inbound_track", digit="#")
    )


def test_stop_documented_and_sparse() -> None:
    documented = _frame(
        {
            "event": "stop",
            "sequenceNumber": "378",
            "streamSid": "MZ1",
            "stop": {"accountSid": "AC1", "callSid": "CA1"},
        }
    )
    assert twilio.decode(documented) == Stop(
        stream_sid="MZ1", sequence_number="378", stop=StopInfo(account_sid="AC1", call_sid="CA1")
    )
    sparse = twilio.decode(_frame({"event": "stop", "streamSid": "MZ1"}))
    assert sparse == Stop(stream_sid="MZ1")


def test_start_without_custom_parameters_or_tracks() -> None:
    frame = _frame(
        {
            "event": "start",
            "sequenceNumber": "1",
            "streamSid": "MZ5",
            "start": {
                "streamSid": "MZ5",
                "callSid": "CA5",
                "accountSid": "AC5",
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            },
        }
    )
    start = twilio.decode(frame)
    assert isinstance(start, Start)
    assert start.start.custom_parameters == {}
    assert start.start.tracks == ["inbound"]


def test_extra_fields_are_ignored() -> None:
    frame = _frame({**MEDIA_OK, "somethingNew": {"x": 1}})
    assert isinstance(twilio.decode(frame), Media)


def test_unknown_event_is_a_value_with_the_raw_frame() -> None:
    frame = b'{"event": "transcription", "streamSid": "MZ1", "text": "hi"}'
    assert twilio.decode(frame) == UnknownTwilioEvent(event="transcription", raw=frame)
    assert twilio.decode(frame.decode()) == UnknownTwilioEvent(event="transcription", raw=frame)


def test_encode_event_round_trips_for_fakes() -> None:
    for line in INBOUND_2020:
        event = twilio.decode(line)
        assert not isinstance(event, UnknownTwilioEvent)
        assert twilio.decode(twilio.encode_event(event)) == event
    media = Media(
        stream_sid="MZ1",
        sequence_number="9",
        media=MediaInfo(chunk="8", timestamp="175", payload=b"\x00\xff" * 80),
    )
    wire = json.loads(twilio.encode_event(media))
    assert wire["event"] == "media"
    assert wire["media"]["payload"] == base64.b64encode(b"\x00\xff" * 80).decode()


# --- errors name the field ------------------------------------------------------------


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda m: m["media"].pop("payload"), "`$.media.payload`"),
        (lambda m: m["media"].__setitem__("payload", "!!not base64!!"), "`$.media.payload`"),
        (lambda m: m["media"].__setitem__("payload", "6/j"), "`$.media.payload`"),
        (lambda m: m.pop("streamSid"), "`$.streamSid`"),
        (lambda m: m.pop("sequenceNumber"), "`$.sequenceNumber`"),
        (lambda m: m.pop("media"), "`$.media`"),
        (lambda m: m["media"].pop("timestamp"), "`$.media.timestamp`"),
        (lambda m: m["media"].__setitem__("chunk", 3), "`$.media.chunk`"),
        (lambda m: m.__setitem__("media", []), "`$.media`"),
    ],
)
def test_bad_media_names_the_field(mutate: object, field: str) -> None:
    msg = json.loads(json.dumps(MEDIA_OK))
    mutate(msg)  # type: ignore[operator]
    text = _rpe(_frame(msg))
    assert field in text
    assert "'media'" in text


def test_non_numeric_timestamp_is_rejected_with_its_name() -> None:
    msg = json.loads(json.dumps(MEDIA_OK))
    msg["media"]["timestamp"] = "soon"
    text = _rpe(_frame(msg))
    assert "timestamp" in text
    assert "$.media" in text


def test_start_missing_call_sid_names_it() -> None:
    msg = json.loads(INBOUND_2020[1])
    del msg["start"]["callSid"]
    assert "`$.start.callSid`" in _rpe(_frame(msg))


def test_start_with_numeric_sample_rate_as_string_is_rejected() -> None:
    msg = json.loads(INBOUND_2020[1])
    msg["start"]["mediaFormat"]["sampleRate"] = "8000"
    assert "`$.start.mediaFormat.sampleRate`" in _rpe(_frame(msg))


def test_mark_without_name_names_it() -> None:
    msg = json.loads(INBOUND_2020[3])
    del msg["mark"]["name"]
    assert "`$.mark.name`" in _rpe(_frame(msg))


@pytest.mark.parametrize(
    ("frame", "needle"),
    [
        ('{"event": "media", ', "malformed JSON"),
        (b"\xff\xfe{}", "malformed JSON"),
        ("[1, 2]", "Expected `object`"),
        ('"media"', "Expected `object`"),
        ("{}", "`$.event`"),
        ('{"event": 7}', "`$.event`"),
        ('{"event": null}', "`$.event`"),
        ("\ud800", "not valid Unicode"),
    ],
)
def test_garbage_is_twilios_fault(frame: str | bytes, needle: str) -> None:
    assert needle in _rpe(frame)


# --- outbound -------------------------------------------------------------------------


def test_send_media_is_exactly_the_documented_object() -> None:
    audio = bytes(range(256)) * 2
    wire = json.loads(twilio.encode(SendMedia(stream_sid="MZ1", payload=audio)))
    assert wire == {
        "event": "media",
        "streamSid": "MZ1",
        "media": {"payload": base64.b64encode(audio).decode()},
    }


def test_send_mark_and_clear_are_exactly_the_documented_objects() -> None:
    assert json.loads(twilio.encode(SendMark(stream_sid="MZ1", name="utt7-12"))) == {
        "event": "mark",
        "streamSid": "MZ1",
        "mark": {"name": "utt7-12"},
    }
    assert json.loads(twilio.encode(SendClear(stream_sid="MZ1"))) == {
        "event": "clear",
        "streamSid": "MZ1",
    }


def test_encoded_frames_put_the_event_first() -> None:
    assert twilio.encode(SendClear(stream_sid="MZ1")).startswith('{"event":"clear"')


@pytest.mark.parametrize(
    "msg",
    [
        SendMedia(stream_sid="MZ1", payload=b"\x7f" * 160),
        SendMark(stream_sid="a", name="b"),
        SendClear(stream_sid="c"),
    ],
)
def test_outbound_round_trip(msg: twilio.TwilioOutbound) -> None:
    assert twilio.decode_outbound(twilio.encode(msg)) == msg


@pytest.mark.parametrize(
    ("frame", "needle"),
    [
        ('{"event": "clear", "streamSid": "MZ1", "track": "inbound"}', "`track`"),
        ('{"event": "media", "streamSid": "MZ1", "media": {"playload": "AA=="}}', "playload"),
        ('{"event": "dtmf", "streamSid": "MZ1"}', "`$.event`"),
        ('{"event": "mark", "streamSid": "MZ1", "mark": {}}', "`$.mark.name`"),
    ],
)
def test_decode_outbound_is_strict_like_twilio(frame: str, needle: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        twilio.decode_outbound(frame)
    assert needle in info.value.message
