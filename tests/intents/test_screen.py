"""The emergency screen, as a caller and an admin would meet it: red flags in plain words are
caught, denials and past events are not, and a clinic can add to the screen but not remove it."""

from __future__ import annotations

import textwrap

import pytest

from pbx_router.intents.screen import EmergencyScreen, RedFlagsSpec, builtin_flag_ids
from pbx_router.rules import RulesError, parse_rules


@pytest.fixture(scope="module")
def screen() -> EmergencyScreen:
    return EmergencyScreen()


# Phrasings written for these tests: none uses the obvious keyword of its family.
FLAGGED: list[tuple[str, str]] = [
    # unresponsive
    ("my dad just went down in the kitchen and he's not answering me", "unresponsive"),
    ("I came home and found my wife lying on the bathroom floor", "unresponsive"),
    ("she fainted twenty minutes ago and she still hasn't come round", "unresponsive"),
    ("my husband keeled over at the table, I shook him and nothing", "unresponsive"),
    ("he past out and we can't get him to wake up", "unresponsive"),
    # breathing (adult, child, baby) and colour
    ("my mother is gasping and can only get out one word at a time", "breathing"),
    ("he's wheezing so bad and the inhaler isn't doing anything", "breathing"),
    ("my baby's ribs are sucking in every time she breathes", "breathing"),
    ("the baby is breathing really fast and grunting", "breathing"),
    ("my little boy has a grape stuck and he's choking", "breathing"),
    ("I can't catch my breath even sitting still", "breathing"),
    ("i dont think hes breathing", "breathing"),
    ("her lips have gone a bit purple", "colour_change"),
    ("his face looks grey and he's all clammy", "colour_change"),
    # chest
    ("it feels like an elephant is sitting on my chest", "chest"),
    ("there's a squeezing feeling behind my breastbone", "chest"),
    ("the ache is shooting down into my left arm and up my jaw", "chest"),
    ("my heart feels really tight and I'm sweating buckets", "chest"),
    # stroke
    ("one side of her face has gone droopy", "stroke"),
    ("his smile is lopsided all of a sudden", "stroke"),
    ("he can't lift his right arm and his words are all jumbled", "stroke"),
    ("my wife is talking gibberish and can't find her words", "stroke"),
    ("my mom suddenly doesn't know where she is", "stroke"),
    ("I suddenly lost the vision in my left eye", "stroke"),
    ("this is the worst headache of my life, it came on like a thunderclap", "stroke"),
    ("his speech is slurry and his leg won't hold him up", "stroke"),
    # bleeding
    ("the cut on his leg is spurting and soaking through the towels", "bleeding"),
    ("I'm twelve weeks along and I'm passing clots", "bleeding"),
    ("my dad is throwing up blood", "bleeding"),
    ("she's been coughing up blood all morning", "bleeding"),
    ("there's blood everywhere and I can't get it to slow down", "bleeding"),
    # overdose / poisoning
    ("my teenager took a handful of her sleeping pills", "overdose_poisoning"),
    ("he swallowed the whole packet of tylenol", "overdose_poisoning"),
    ("my toddler got into the cleaning supplies and drank some", "overdose_poisoning"),
    ("my son might have swallowed a button battery", "overdose_poisoning"),
    ("she took her pills and a bottle of vodka", "overdose_poisoning"),
    ("the dog and my kid both licked the antifreeze", "overdose_poisoning"),
    ("he took an over dose", "overdose_poisoning"),
    # anaphylaxis
    ("her tongue is swelling up after the shrimp", "anaphylaxis"),
    ("my throat feels like it's getting smaller", "anaphylaxis"),
    ("he got stung by a wasp and now he has hives all over", "anaphylaxis"),
    ("we used his epi pen and he's still struggling", "anaphylaxis"),
    ("my lips are puffing up and it's hard to swallow my own spit", "anaphylaxis"),
    # seizure
    ("my son is shaking all over and not responding", "seizure"),
    ("she's jerking and foaming at the mouth", "seizure"),
    ("he's been fitting for five minutes", "seizure"),
    # head injury
    ("he banged his head on the ice and keeps throwing up", "head_injury"),
    ("grandma fell and hit her head, she's on warfarin", "head_injury"),
    ("my son took a blow to the head at football and now he's confused", "head_injury"),
    # suicide / self-harm, direct and indirect
    ("I don't see the point in living anymore", "suicide_self_harm"),
    ("my kids would be better off without me", "suicide_self_harm"),
    ("I've been putting aside my pills so I can take them all at once", "suicide_self_harm"),
    ("I have a plan and I'm going to do it tonight, I wrote a note", "suicide_self_harm"),
    ("my daughter says she wants to end it all", "suicide_self_harm"),
    ("I cut myself really deep on purpose", "suicide_self_harm"),
    ("I wrote goodbye letters to my family", "suicide_self_harm"),
    ("I want to go to sleep and never wake up", "suicide_self_harm"),
    ("my brother keeps talking about killing himself", "suicide_self_harm"),
    # other public triage red flags
    ("my son has a fever and a stiff neck and the light hurts his eyes", "meningitis_sepsis"),
    ("she has spots that don't fade when I press a glass on them", "meningitis_sepsis"),
    ("my three week old has a temperature of 38", "infant"),
    ("the baby is really floppy and won't feed", "infant"),
    ("he spilled boiling water and the skin is peeling off his whole arm", "burns"),
    ("his sugar dropped to 40 and he's not making sense", "blood_sugar"),
    ("my stomach is hard as a board and it hurts so much", "abdomen"),
    ("I'm 34 weeks pregnant with a terrible headache and I'm seeing spots", "pregnancy"),
    ("I'm pregnant and the baby has stopped moving", "pregnancy"),
    ("my father fell off a ladder and can't feel his legs", "major_trauma"),
    # history does not hide what is happening now
    ("they sent him home from the ER yesterday but right now he's not making sense", "stroke"),
    ("she's suddenly so short of breath she can't finish a sentence", "breathing"),
]


@pytest.mark.parametrize("text,flag", FLAGGED)
def test_red_flags_in_plain_words_are_caught(screen: EmergencyScreen, text: str, flag: str) -> None:
    result = screen.screen(text)
    assert result.flagged, f"missed: {text!r}"
    assert flag in {f.flag for f in result.findings}, [f.flag for f in result.findings]


NOT_FLAGGED: list[str] = [
    # denials (NegEx pre- and post-negation)
    "no chest pain, just need my refill",
    "I'm not having any trouble breathing, it's just a cough",
    "she denies any bleeding",
    "there's no sign of swelling in her throat",
    "the chest pressure went away after I rested",
    "my chest isn't hurting anymore, I just want a checkup",
    # past events
    "chest pain last year, fine now",
    "I had a stroke a few years ago and need my records sent",
    "after my heart attack in 2019 I need a follow up appointment",
    "he has a history of seizures and needs a new neurologist",
    # alarming words that are a topic, not a symptom
    "can I get the results of my chest x-ray",
    "I need a refill on my heart medication, no chest pain",
    "I need my seizure medication refilled",
    "can I get a new EpiPen prescription for school",
    "I'd like a refill on my blood thinner",
    "I got a bill for the ambulance and I have a question",
    "what are the signs of a stroke, I'm doing a class",
    "I'm calling about my blood pressure pills",
    "my blood work results came back, can someone explain them",
    # routine requests with risky words
    "I need to move my appointment, I can't make it on Tuesday",
    "I'm confused about this bill",
    "I can't swallow those big pills, is there a liquid",
    "I hurt myself lifting boxes and my back is sore",
    "I cut my finger cooking, it's a small cut",
    "I need a refill of my inhaler",
    "my son has a limp since his soccer game",
    "I'm expecting a call back from the doctor",
    "the office isn't answering the phone",
    "I have a sore throat and a runny nose",
    "my blue cross card was declined",
    "it's not an emergency but I need to see the doctor this week",
    "I took all my meds this morning like usual",
    "I'm almost out of my lisinopril",
    "I'd like a flu shot",
    # mild, explained or look-alike words
    "I get a bit short of breath on the stairs lately",
    "the ER said the chest pain was reflux and to follow up with you",
    "is my inhaler in stock at the pharmacy",
    "I have an infection and need antibiotics",
    "the bruise on my shin is turning purple",
    "my husband's oxygen tank is running low, who delivers them",
]


@pytest.mark.parametrize("text", NOT_FLAGGED)
def test_denials_history_and_topics_do_not_flag(screen: EmergencyScreen, text: str) -> None:
    result = screen.screen(text)
    assert not result.flagged, [(f.flag, f.words, f.rule) for f in result.findings]


@pytest.mark.parametrize(
    "text",
    [
        "he is not breathing",
        "he isn't breathing",
        "she's not responding",
        "the bleeding won't stop",
        "he's not making sense",
        "there's no pulse",
        "she can't breathe",
        "I don't want to live anymore",
    ],
)
def test_negation_words_that_are_the_symptom_still_flag(screen: EmergencyScreen, text: str) -> None:
    assert screen.screen(text).flagged


def test_a_denial_is_kept_for_the_trace(screen: EmergencyScreen) -> None:
    result = screen.screen("no chest pain, just need my refill")
    assert not result.flagged
    assert any("chest" in d and "negated" in d for d in result.denied)


def test_past_event_is_listed_as_historical(screen: EmergencyScreen) -> None:
    result = screen.screen("I had a heart attack back in 2019")
    assert not result.flagged
    assert result.historical


def test_negation_scope_ends_at_but(screen: EmergencyScreen) -> None:
    result = screen.screen("no fever but my chest feels crushed")
    assert [f.flag for f in result.findings] == ["chest"]


def test_a_new_symptom_after_a_past_one_flags(screen: EmergencyScreen) -> None:
    result = screen.screen("I had a stroke last year and now my face is drooping again")
    assert "stroke" in {f.flag for f in result.findings}


def test_pain_that_came_back_is_current(screen: EmergencyScreen) -> None:
    assert screen.screen("the chest pain went away but now it came back").flagged


def test_finding_names_its_words_route_and_offsets(screen: EmergencyScreen) -> None:
    text = "my husband is clutching his chest and sweating"
    f = screen.screen(text).findings[0]
    assert f.flag == "chest" and f.category == "medical" and f.route == "emergency"
    assert "chest" in f.words
    assert "chest" in text[f.start : f.end]
    assert 0 < f.score <= 1 and f.source == "best"


def test_crisis_goes_to_the_crisis_intent_and_medical_first(screen: EmergencyScreen) -> None:
    result = screen.screen("I took a whole bottle of pills because I want to die")
    assert [f.category for f in result.findings] == ["medical", "crisis"]
    assert result.routes == ("emergency", "mental_health_crisis")


# --- recogniser uncertainty -----------------------------------------------------------------


def test_flag_heard_only_in_an_alternative_counts(screen: EmergencyScreen) -> None:
    result = screen.screen(
        "I need to reschedule for Tuesday",
        alternatives=("I need to ... he is not breathing", "I need to reschedule Tuesday"),
    )
    assert result.flagged
    assert result.findings[0].source == "alternative:1"


def test_flag_on_low_confidence_words_counts_and_says_so(screen: EmergencyScreen) -> None:
    text = "my wife collapsed"
    result = screen.screen(text, word_confidences=[0.9, 0.8, 0.2])
    assert result.flagged and result.findings[0].source == "best:low_confidence"


def test_an_unsure_no_does_not_cancel_a_red_flag(screen: EmergencyScreen) -> None:
    text = "no chest pain"
    assert not screen.screen(text, word_confidences=[0.95, 0.9, 0.9]).flagged
    result = screen.screen(text, word_confidences=[0.2, 0.9, 0.9])
    assert result.flagged and result.findings[0].notes


def test_confidences_that_do_not_line_up_are_ignored(screen: EmergencyScreen) -> None:
    assert screen.screen("he collapsed", word_confidences=[0.1]).findings[0].source == "best"


@pytest.mark.parametrize(
    "text",
    ["can't breath", "he past out", "she took an over dose", "I think hes having a seezure",
     "my chest is crushin", "[noise] uh her lips are blue <sil>"],
)
def test_recogniser_slips_still_flag(screen: EmergencyScreen, text: str) -> None:
    assert screen.screen(text).flagged


# --- the clinic's additions -----------------------------------------------------------------


def test_clinic_words_extend_a_built_in_flag() -> None:
    spec = RedFlagsSpec.model_validate({"words": {"chest": ["ticker is acting up"]}})
    text = "my ticker is acting up"
    assert not EmergencyScreen().screen(text).flagged
    assert EmergencyScreen(spec).screen(text).findings[0].flag == "chest"


def test_clinic_adds_a_flag_with_a_route() -> None:
    spec = RedFlagsSpec.model_validate(
        {
            "flags": {"dialysis_line": {"label": "dialysis line problem", "words": ["fistula + bleeding|clotted ~4"]}},
            "routes": {"dialysis_line": "emergency", "crisis": "crisis_team"},
        }
    )
    s = EmergencyScreen(spec)
    f = s.screen("my fistula is bleeding").findings[0]
    assert (f.flag, f.label, f.route) == ("dialysis_line", "dialysis line problem", "emergency")
    assert s.screen("I want to kill myself").findings[0].route == "crisis_team"


@pytest.mark.parametrize(
    "section,message",
    [
        ({"enabled": False}, "cannot be switched off"),
        ({"words": {"no_such_flag": ["x"]}}, "unknown red flag"),
        ({"flags": {"chest": {"label": "x", "words": ["y"]}}}, "built-in"),
        ({"words": {"chest": ["NOT_A_CLASS + pain"]}}, "unknown word class"),
        ({"routes": {"whatever": "emergency"}}, "not a red flag id"),
    ],
)
def test_clinic_cannot_remove_or_misname(section: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RedFlagsSpec.model_validate(section)


def test_every_built_in_family_exists() -> None:
    assert {
        "unresponsive", "breathing", "colour_change", "chest", "stroke", "bleeding",
        "overdose_poisoning", "anaphylaxis", "seizure", "head_injury", "suicide_self_harm",
    } <= builtin_flag_ids()


RULES = textwrap.dedent(
    """\
    version: 1
    settings:
      emergency: {{target: oncall}}
    intents:
      emergency: {{urgency: emergency, keywords: [emergency]}}
      crisis: {{urgency: emergency, keywords: [suicide]}}
      refill: {{keywords: [refill]}}
    targets:
      oncall: {{endpoint: PJSIP/agent3}}
      pharmacy: {{queue: pharmacy}}
    red_flags:
      words:
        chest: [ticker hurts]
      routes:
    {routes}
    rules:
      - name: emergencies
        when: {{intent: [emergency, crisis]}}
        then: {{target: oncall}}
      - name: refill
        when: {{intent: refill}}
        then: {{target: pharmacy}}
      - name: fallback
        then: {{target: oncall}}
    """
)


def test_rules_file_red_flags_reach_the_screen() -> None:
    rs = parse_rules(RULES.format(routes="    crisis: crisis\n    chest: emergency"), "clinic.yaml")
    s = EmergencyScreen(rs.spec.red_flags)
    f = s.screen("my ticker hurts").findings[0]
    assert (f.flag, f.route) == ("chest", "emergency")
    assert s.screen("I want to end my life").findings[0].route == "crisis"


def test_route_to_a_routine_intent_is_rejected_with_its_line() -> None:
    text = RULES.format(routes="    stroke: refill")
    line = text.splitlines().index("    stroke: refill") + 1
    with pytest.raises(RulesError) as info:
        parse_rules(text, "clinic.yaml")
    (error,) = [e for e in info.value.errors if "red_flags" in e]
    assert error.startswith(f"clinic.yaml:{line}:")
    assert "refill" in error and "emergency" in error


def test_route_to_an_unknown_intent_is_rejected() -> None:
    with pytest.raises(RulesError, match="undefined intent 'nurse'"):
        parse_rules(RULES.format(routes="    medical: nurse"), "clinic.yaml")


def test_rules_file_cannot_switch_the_screen_off() -> None:
    text = RULES.format(routes="    chest: emergency").replace("  words:", "  enabled: false\n  words:")
    with pytest.raises(RulesError, match="cannot be switched off"):
        parse_rules(text, "clinic.yaml")
