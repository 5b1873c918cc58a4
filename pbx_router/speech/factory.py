"""Which engine, with which model: a plain, JSON-serialisable description that builds recognisers.

The pool hands the same description to worker processes, so a worker replaced after a crash builds
exactly the recogniser the first one had.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from pbx_router.speech.types import EngineUnavailable, Recognizer

ENGINES = ("moonshine", "pocketsphinx", "vosk", "vosk-server")
# Moonshine hears what no language model of ours lists (WER 0.40 -> 0.12 on the held-out
# recordings, 0.40 -> 0.15 on the development ones; models/README.md); PocketSphinx stays for the lightest installs.
DEFAULT_ENGINE = "moonshine"


@dataclass(frozen=True, slots=True)
class RecognizerFactory:
    engine: str = DEFAULT_ENGINE
    sample_rate: int = 16000
    # vosk: model directory; pocketsphinx: acoustic model (hmm) dir; moonshine: the prepared
    # model directory (filled in by prepare())
    model_path: str | None = None
    phrases: tuple[str, ...] = ()
    # pocketsphinx: "domain" (LM built from the corpus + phrases, mixed with the most frequent
    # words of the wheel's general English model) or "generic" (the wheel's LM as it is).
    language_model: str = "domain"
    # The mixture (see lm.py): general words kept (0: the domain model alone) and their weight;
    # None takes lm.GENERAL_WORDS / lm.GENERAL_WEIGHT.
    general_words: int | None = None
    general_weight: float | None = None
    lm_path: str | None = None  # filled in by prepare() for the domain LM
    dict_path: str | None = None
    server_url: str | None = None  # vosk-server
    options: dict[str, Any] = field(default_factory=dict)  # raw engine options

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"unknown speech engine {self.engine!r} (known: {', '.join(ENGINES)})")
        if self.language_model not in ("domain", "generic"):
            raise ValueError(f"language_model must be 'domain' or 'generic', got {self.language_model!r}")
        if self.engine == "vosk" and not self.model_path:
            raise ValueError("the vosk engine needs model_path (a Vosk model directory)")
        if self.engine == "vosk-server" and not self.server_url:
            raise ValueError("the vosk-server engine needs server_url (ws://host:port)")

    def prepare(self, cache_dir: Path | None = None) -> RecognizerFactory:
        """Do the one-off, blocking work (build the domain LM, convert the Moonshine model) and return
        the ready description."""
        if self.engine == "moonshine":
            if self.model_path:
                return self
            from pbx_router.speech.moonshine_prep import prepare_model

            return replace(self, model_path=str(prepare_model(cache_dir)))
        if self.engine != "pocketsphinx" or self.language_model != "domain" or self.lm_path:
            return self
        from pbx_router.speech.lm import GENERAL_WEIGHT, GENERAL_WORDS, build_domain_model

        model = build_domain_model(
            self.phrases, cache_dir=cache_dir,
            general_words=GENERAL_WORDS if self.general_words is None else self.general_words,
            general_weight=GENERAL_WEIGHT if self.general_weight is None else self.general_weight)
        return replace(self, lm_path=str(model.lm_path), dict_path=str(model.dict_path))

    def create(self) -> Recognizer:
        """Build one recogniser (blocking; loads models). Not for vosk-server, which is async."""
        if self.engine == "pocketsphinx":
            from pbx_router.speech.engines.pocketsphinx_engine import (
                PocketSphinxOptions,
                PocketSphinxRecognizer,
            )

            ready = self.prepare()
            return PocketSphinxRecognizer(PocketSphinxOptions(
                lm_path=Path(ready.lm_path) if ready.lm_path else None,
                dict_path=Path(ready.dict_path) if ready.dict_path else None,
                hmm_path=Path(self.model_path) if self.model_path else None,
                sample_rate=self.sample_rate,
                extra=dict(self.options),
            ))
        if self.engine == "moonshine":
            from pbx_router.speech.engines.moonshine_engine import MoonshineRecognizer, load_model

            ready = self.prepare()
            assert ready.model_path is not None
            return MoonshineRecognizer(load_model(Path(ready.model_path)), self.sample_rate)
        if self.engine == "vosk":
            from pbx_router.speech.engines.vosk_engine import VoskRecognizer

            assert self.model_path is not None
            path = Path(self.model_path)
            if not path.is_dir():
                raise EngineUnavailable(f"{path}: Vosk model directory not found")
            return VoskRecognizer(path, self.sample_rate, list(self.phrases) or None)
        raise EngineUnavailable(f"{self.engine} recognisers are remote; use EnginePool")

    def to_json(self) -> str:
        data = asdict(self)
        data["phrases"] = list(self.phrases)
        return json.dumps(data)

    @classmethod
    def from_json(cls, raw: str) -> RecognizerFactory:
        data = json.loads(raw)
        data["phrases"] = tuple(data.get("phrases", ()))
        return cls(**data)


def build_engine(engine: str = DEFAULT_ENGINE, **opts: Any) -> Recognizer:
    """A single in-process recogniser (blocking). For tools and tests; the daemon uses EnginePool."""
    phrases = tuple(opts.pop("phrases", ()) or ())
    return RecognizerFactory(engine=engine, phrases=phrases, **opts).create()
