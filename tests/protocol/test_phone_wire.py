"""`/phone/ws` in the core (`boba_proto.phone`): both ends of the softphone protocol, so the
server and `boba call` cannot drift apart."""

from __future__ import annotations

import json

import pytest

from boba_proto import phone, twilio
from boba_proto.call import CallerText, FunctionCalled, Transcript
from boba_proto.errors import RemoteProtocolError


def test_typed_text_round_trips_from_the_phone_to_the_core() -> None:
    assert phone.decode_from_phone(phone.encode_text("a taro milk tea"), call_sid="PH1") == \
        CallerText(text="a taro milk tea")


def test_observations_round_trip_to_the_phone() -> None:
    said = phone.observation_frame(Transcript(role="assistant", content="Hi!"))
    assert said is not None
    assert phone.decode_to_phone(said) == phone.PhoneTranscript(role="assistant", content="Hi!")
    called = FunctionCalled(id="f1", name="checkout_order", arguments="{}", result='{"ok":true}')
    frame = phone.observation_frame(called)
    assert frame is not None and json.loads(frame)["event"] == "function"
    assert phone.decode_to_phone(frame) == phone.PhoneFunction(
        name="checkout_order", arguments="{}", result='{"ok":true}'
    )


def test_twilio_frames_to_the_phone_decode_as_twilio_outbound() -> None:
    mark = twilio.encode(twilio.SendMark(stream_sid="MZ1", name="utt-1"))
    assert phone.decode_to_phone(mark) == twilio.SendMark(stream_sid="MZ1", name="utt-1")
    clear = twilio.encode(twilio.SendClear(stream_sid="MZ1"))
    assert phone.decode_to_phone(clear) == twilio.SendClear(stream_sid="MZ1")


def test_unknown_and_malformed_frames_to_the_phone() -> None:
    assert phone.decode_to_phone('{"event": "hello"}') == phone.UnknownToPhone(event="hello")
    for bad in ("not json", "[]", '{"event": "transcript", "role": 1}', '{"event": "mark"}'):
        with pytest.raises(RemoteProtocolError):
            phone.decode_to_phone(bad)
