"""PocketSphinx recogniser (blocking; runs inside a worker process, see ``workers.py``).

PocketSphinx holds the GIL while decoding, so it is never run on the event loop or in a thread
pool of the daemon process: the pool gives each worker process its own decoders.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pbx_router.speech.types import Transcript, Word

ENGINE = "pocketsphinx"
# PocketSphinx features run at 100 frames per second regardless of the sample rate.
_FRAMES_PER_SECOND = 100.0
_FILLER = re.compile(r"^(<s>|</s>|<sil>|\[.*\]|\+\+.*\+\+)$")
_ALT_SUFFIX = re.compile(r"\(\d+\)$")
# N-best entries read per utterance to find a few distinct word strings (costs ~1 ms).
_NBEST_SCAN = 40
# Initial cepstral mean for telephone-band (300-3400 Hz) audio upsampled to 16 kHz. The model's
# default (40,3,-1) is for wideband microphones; with it the first utterance a decoder hears is
# mostly wrong until live CMN adapts (measured: "oh three one four nineteen eighty" -> "the want
# one i'd of"). Measured as the live CMN after decoding a mix of G.711 fixture utterances.
# Search settings for the broad caller vocabulary (~3.5k words): the flat-lexicon second pass is
# skipped (38% less CPU for +0.2 points of WER on development recordings) and the active HMMs per
# frame are capped (a noisy frame cannot blow up the search). Decoder options given in
# PocketSphinxOptions.extra override these (models/README.md has the measurements).
SEARCH_DEFAULTS: dict[str, Any] = {"fwdflat": False, "maxhmmpf": 5000}
TELEPHONE_CMNINIT = "39.8,27.3,-36.0,31.0,-22.9,-4.4,12.0,-26.3,18.8,-11.4,-1.2,9.0,-13.4"


@dataclass(slots=True)
class PocketSphinxOptions:
    lm_path: Path | None = None  # None: the generic en-us model shipped in the wheel
    dict_path: Path | None = None
    hmm_path: Path | None = None
    sample_rate: int = 16000
    partial_every_ms: int = 200  # computing a hypothesis costs time: not on every 20 ms frame
    alternatives: int = 5  # n-best word strings kept besides the best one (0: none)
    extra: dict[str, Any] = field(default_factory=dict)  # raw decoder options (beam, topn, ...)


def make_decoder(opts: PocketSphinxOptions) -> Any:
    from pocketsphinx import Config, Decoder, get_model_path

    config = Config(
        hmm=str(opts.hmm_path or get_model_path("en-us/en-us")),
        lm=str(opts.lm_path or get_model_path("en-us/en-us.lm.bin")),
        dict=str(opts.dict_path or get_model_path("en-us/cmudict-en-us.dict")),
        samprate=opts.sample_rate,
        loglevel="ERROR",
        cmninit=TELEPHONE_CMNINIT,
    )
    for key, value in {**SEARCH_DEFAULTS, **opts.extra}.items():
        config[key] = value
    return Decoder(config)


class PocketSphinxRecognizer:
    """One utterance at a time on one decoder. Reusable: ``final()``/``reset()`` re-arm it."""

    def __init__(self, opts: PocketSphinxOptions, decoder: Any | None = None) -> None:
        self.sample_rate = opts.sample_rate
        self._opts = opts
        self._decoder = decoder if decoder is not None else make_decoder(opts)
        self._started = False
        self._samples = 0
        self._samples_at_partial = 0
        self._partial_text = ""
        self._partial_every = opts.sample_rate * opts.partial_every_ms // 1000

    def accept(self, pcm: bytes) -> Transcript | None:
        if len(pcm) % 2:
            raise ValueError("PCM16 must have an even number of bytes")
        if not pcm:
            return None
        if not self._started:
            self._decoder.start_utt()
            self._started = True
        self._decoder.process_raw(pcm, False, False)
        self._samples += len(pcm) // 2
        if self._samples - self._samples_at_partial < self._partial_every:
            return None
        self._samples_at_partial = self._samples
        hyp = self._decoder.hyp()
        text = _clean_text(hyp.hypstr) if hyp is not None else ""
        if text == self._partial_text:
            return None
        self._partial_text = text
        return Transcript(text=text, confidence=0.0, words=[], engine=ENGINE, is_final=False)

    def final(self) -> Transcript:
        if not self._started:
            return Transcript(text="", confidence=0.0, words=[], engine=ENGINE, is_final=True)
        self._decoder.end_utt()
        hyp = self._decoder.hyp()
        segments = [seg for seg in self._decoder.seg() if not _FILLER.match(seg.word)]
        # hyp.prob is the utterance posterior from the lattice: discriminative but shrinking with
        # length, so it is normalised per word (geometric mean).
        posterior = float(hyp.prob) if hyp is not None else 0.0
        confidence = round(max(0.0, min(1.0, posterior)) ** (1.0 / len(segments)), 3) if segments else 0.0
        words = [
            Word(
                word=_ALT_SUFFIX.sub("", seg.word),
                start_s=round(seg.start_frame / _FRAMES_PER_SECOND, 2),
                end_s=round((seg.end_frame + 1) / _FRAMES_PER_SECOND, 2),
                # The word's posterior in the lattice (the bindings return it as a probability,
                # already converted from the decoder's log domain).
                confidence=round(max(0.0, min(1.0, float(seg.prob))), 3),
            )
            for seg in segments
        ]
        text = " ".join(w.word for w in words)
        alternatives = self._alternatives(text) if self._opts.alternatives else ()
        self._rearm()
        return Transcript(text=text, confidence=confidence, words=words, engine=ENGINE,
                          is_final=True, alternatives=alternatives)

    def _alternatives(self, text: str) -> tuple[str, ...]:
        """The lattice's next-best word strings: the n-best list differs mostly in fillers and
        pronunciation variants, so more entries are read than kept."""
        seen = {text}
        out: list[str] = []
        try:
            for hyp in itertools.islice(self._decoder.nbest(), _NBEST_SCAN):
                if hyp is None:  # a short utterance's lattice can hand out empty entries
                    continue
                candidate = _clean_text(hyp.hypstr)
                if candidate and candidate not in seen:
                    seen.add(candidate)
                    out.append(candidate)
                    if len(out) >= self._opts.alternatives:
                        break
        except RuntimeError:  # no lattice (e.g. an utterance cut to nothing): no alternatives
            return ()
        return tuple(out)

    def reset(self) -> None:
        if self._started:
            self._decoder.end_utt()
        self._rearm()

    def _rearm(self) -> None:
        self._started = False
        self._samples = 0
        self._samples_at_partial = 0
        self._partial_text = ""


def _clean_text(hypstr: str) -> str:
    return " ".join(_ALT_SUFFIX.sub("", w) for w in hypstr.split() if not _FILLER.match(w))
