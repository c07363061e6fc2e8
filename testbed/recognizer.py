"""A real speech recognizer for the local OpenAI server: pocketsphinx (its PyPI wheel ships
an English model and runs offline) over a JSGF grammar of the sentences a test or benchmark
speaks (the fragments a pause cuts off among them). With the grammar it recognizes espeak-ng speech
exactly, and it hears a fragment as a fragment: "i would like to book a table for", cut by a
pause, is what it returns.

Decoders are slow to make (about 0.2 s) and do not survive moving between threads (their
partial hypotheses stop), so a recognizer keeps one per thread: a stream is fed on one thread.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterable

import numpy as np
from pocketsphinx import Config, Decoder, get_model_path

RATE = 16000  # the acoustic model's sample rate


def words(text: str) -> str:
    """A sentence as the grammar holds it: lowercase words, no punctuation."""
    return " ".join(re.findall(r"[a-z']+", text.lower()))


def to_16k(pcm: bytes, rate: int) -> bytes:
    """16-bit mono PCM at ``rate`` resampled to the model's 16 kHz."""
    if rate == RATE or not pcm:
        return pcm
    samples = np.frombuffer(pcm, dtype=np.int16).astype(np.float32)
    count = int(len(samples) * RATE / rate)
    at = np.linspace(0, len(samples) - 1, num=count)
    return np.interp(at, np.arange(len(samples)), samples).astype(np.int16).tobytes()


class Recognizer:
    def __init__(self, sentences: Iterable[str]) -> None:
        self.sentences = sorted({words(s) for s in sentences if words(s)})
        if not self.sentences:
            raise ValueError("a recognizer needs at least one sentence")
        # only these: each extra alternative is one more way to mishear the others, so a
        # fragment a pause will cut off is listed as a sentence of its own
        alternatives = " | ".join(self.sentences)
        self._grammar = f"#JSGF V1.0;\ngrammar corpus;\npublic <utterance> = {alternatives};\n"
        self._local = threading.local()

    def _decoder(self) -> Decoder:
        model = get_model_path()
        config = Config(
            hmm=os.path.join(model, "en-us", "en-us"),
            dict=os.path.join(model, "en-us", "cmudict-en-us.dict"),
            lm=None,
            loglevel="FATAL",
        )
        decoder = Decoder(config)
        decoder.add_jsgf_string("corpus", self._grammar)
        decoder.activate_search("corpus")
        return decoder

    def decoder(self) -> Decoder:
        """This thread's decoder, made on its first use here."""
        decoder: Decoder | None = getattr(self._local, "decoder", None)
        if decoder is None:
            decoder = self._local.decoder = self._decoder()
        return decoder

    def warm(self) -> Recognizer:
        """Make this thread's decoder now: a grammar the model cannot take fails here."""
        self.decoder()
        return self

    def transcribe(self, pcm: bytes, rate: int) -> str:
        """The words of one utterance (16-bit mono PCM at ``rate``)."""
        stream = self.stream(rate)
        stream.feed(pcm)
        return stream.finish()

    def stream(self, rate: int) -> RecognitionStream:
        return RecognitionStream(self, rate)


class RecognitionStream:
    """One utterance as it arrives: partial hypotheses while it is spoken, then the final."""

    def __init__(self, recognizer: Recognizer, rate: int) -> None:
        self._recognizer = recognizer
        self._decoder: Decoder | None = None  # on the feeding thread, at the first feed
        self._rate = rate
        self._done = False

    def _started(self) -> Decoder:
        if self._decoder is None:
            self._decoder = self._recognizer.decoder()
            self._decoder.start_utt()
        return self._decoder

    def feed(self, pcm: bytes) -> str:
        """Feed audio; the words heard so far."""
        decoder = self._started()
        decoder.process_raw(to_16k(pcm, self._rate), False, False)
        hypothesis = decoder.hyp()
        return hypothesis.hypstr if hypothesis is not None else ""

    def finish(self) -> str:
        """The utterance's words: the final hypothesis, or the last partial one when the
        final does not reach the end of a sentence of the grammar."""
        if self._done:
            return ""
        decoder = self._started()
        partial = decoder.hyp()
        decoder.end_utt()
        final = decoder.hyp()
        self._done = True
        text = final.hypstr if final is not None else ""
        return text or (partial.hypstr if partial is not None else "")

    def abandon(self) -> None:
        if not self._done and self._decoder is not None:
            self._decoder.end_utt()
        self._done = True
