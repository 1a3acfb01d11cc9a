"""What a voice session hears (chat/voice/ai/audio.py): PCM or WebM by the first bytes, energy,
utterances ending on silence, and their bounds."""

from __future__ import annotations

import io
import wave

from chat.voice.ai import audio
from tests.chat.voice.ai import EBML, pcm_silence, pcm_tone

BOUNDS = audio.Bounds(silence_seconds=0.5, silence_rms=500.0, max_seconds=5.0, max_bytes=1_000_000)


def test_webm_is_told_from_pcm_by_its_ebml_magic():
    assert audio.detect(EBML + b"rest") == audio.Format.WEBM
    assert audio.detect(pcm_tone(0.01)) == audio.Format.PCM
    assert audio.detect(b"\x1a\x45") == audio.Format.PCM


def test_energy_of_silence_and_of_a_tone():
    assert audio.rms(b"") == 0.0
    assert audio.rms(pcm_silence(0.02)) < 100
    assert 4000 < audio.rms(pcm_tone(0.02, amplitude=6000)) < 4500  # a sine's RMS: amplitude / sqrt(2)
    assert audio.rms(b"\x01\x00\x01") == 1.0  # an odd byte is left out


def test_pcm_is_sent_as_a_16_khz_mono_wav():
    name, data, kind = audio.Utterance(audio.Format.PCM, bytearray(pcm_tone(0.5))).upload()
    assert (name, kind) == ("utterance.wav", "audio/wav")
    with wave.open(io.BytesIO(data)) as file:
        assert (file.getframerate(), file.getnchannels(), file.getsampwidth(), file.getnframes()) == (
            16_000,
            1,
            2,
            8000,
        )


def test_leading_silence_is_dropped_and_silence_after_speech_ends_the_utterance():
    ear = audio.Listener(BOUNDS)
    assert ear.feed(pcm_silence(1.0)) == audio.Heard() and ear.utterance is None
    assert ear.feed(pcm_tone(0.3)).speech
    # Frames of any length (an odd one too): windows straddle them, and 0.5 s of quiet ends it.
    quiet = pcm_silence(0.5)
    first = ear.feed(quiet[:4001])
    assert not first.ended and not first.speech
    assert ear.feed(quiet[4001:]).ended
    utterance = ear.take()
    assert utterance is not None and utterance.format == audio.Format.PCM
    assert bytes(utterance.data) == pcm_tone(0.3) + quiet
    assert ear.take() is None


def test_webm_is_kept_as_sent_until_the_client_ends_it():
    ear = audio.Listener(BOUNDS)
    assert ear.feed(EBML + b"head").speech
    assert ear.feed(pcm_silence(1.0)).speech  # a WebM recording's later chunks: not PCM
    utterance = ear.take()
    assert utterance is not None and utterance.upload()[0::2] == ("utterance.webm", "audio/webm")
    assert bytes(utterance.data) == EBML + b"head" + pcm_silence(1.0)


def test_an_utterance_past_its_bounds_overflows_once_and_keeps_nothing():
    ear = audio.Listener(
        audio.Bounds(silence_seconds=0.5, silence_rms=500.0, max_seconds=1.0, max_bytes=10**6)
    )
    assert not ear.feed(pcm_tone(0.9)).overflowed
    assert ear.feed(pcm_tone(0.2)).overflowed
    assert not ear.feed(pcm_tone(0.2)).overflowed
    assert ear.feed(pcm_silence(0.6)).ended
    utterance = ear.take()
    assert utterance is not None and utterance.overflowed and not utterance.data
    small = audio.Listener(
        audio.Bounds(silence_seconds=0.5, silence_rms=500.0, max_seconds=60, max_bytes=100)
    )
    assert small.feed(EBML + b"x" * 100).overflowed
