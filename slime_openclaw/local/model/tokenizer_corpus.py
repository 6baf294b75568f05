"""A small, deterministic synthetic text corpus for training the tiny model's tokenizer.

The corpus mixes the kinds of text the embedded default handles: short dialogue-like
English, word problems with numbers, JSON objects (tool-call arguments), code-ish lines
and a sprinkling of non-ASCII text (accents, CJK, emoji). It is generated from a seeded
``random.Random``, so the same seed always yields the same documents and therefore the
same tokenizer. It is not meant as pre-training data of any quality, and it contains no
special tokens (those are added to the tokenizer separately and never learned by BPE).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


# A general English lexicon so BPE learns common words, not only the templates above.
NOUNS = _words("""
time year people way day man woman child world life hand part place case week company system program
question work government number night point home water room mother area money story fact month lot right
study book eye job word business issue side kind head house service friend father power hour game line end
member law car city community name president team minute idea kid body information back parent face others
level office door health person art war history party result change morning reason research girl guy moment
air teacher force education student homework answer problem solution example teacher grade comment essay
paragraph sentence draft review feedback score file folder directory command terminal output error warning
function variable value list table database server request response message user assistant tool model
network browser window button page screen image video music picture letter email phone address street
river mountain forest garden kitchen table chair window floor wall market price cost payment order store
product customer doctor patient hospital medicine school class lesson test exam course science math
language country state village road bridge station train plane ticket hotel trip weekend holiday summer
winter spring autumn weather rain snow sun wind cloud sky tree flower bird dog cat horse fish food meal
breakfast lunch dinner bread cheese coffee tea milk sugar salt apple orange banana potato tomato recipe
""")
VERBS_BASE = _words("""
be have do say get make go know take see come think look want give use find tell ask work seem feel try
leave call keep let begin help show hear play run move like live believe hold bring happen write provide
sit stand lose pay meet include continue set learn change lead understand watch follow stop create speak
read allow add spend grow open walk win offer remember love consider appear buy wait serve die send expect
build stay fall cut reach kill remain suggest raise pass sell require report decide pull explain check
rewrite fix improve compare describe calculate count solve answer summarize translate search install update
delete copy save load print return parse render train measure record judge grade teach correct finish
""")
ADJECTIVES = _words("""
good new first last long great little own other old right big high different small large next early young
important few public bad same able simple clear short friendly specific natural careful quick slow easy
hard correct wrong true false happy sad strong weak warm cold hot cool dark bright empty full free busy
ready sure certain possible likely final total average main whole real best better worse nice helpful
polite formal casual detailed brief exact similar useful human modern local recent open closed safe
""")
ADVERBS = _words("""
also just only very well even back still too here there now then always never often sometimes usually
really almost already again quickly slowly carefully clearly probably maybe soon today tomorrow yesterday
""")
EXTRA_WORDS = _words("""
one two three four five six seven eight nine ten eleven twelve twenty thirty forty fifty hundred thousand
million half quarter double Monday Tuesday Wednesday Thursday Friday Saturday Sunday January February March
April May June July August September October November December Paris London Tokyo Berlin Madrid Rome
Sydney Toronto Chicago Boston weather temperature degrees percent minutes seconds hours days weeks months
""")
FUNCTION_WORDS = _words("""
the a an this that these those my your his her its our their some any every each no all both either
and but or so because although while if when after before since until unless though whether
in on at by for with about against between into through during without under over above below to from
up down out off near
""")

NAMES = ("Alice", "Bob", "Carol", "Dave", "Eve", "Frank", "Grace", "Heidi", "Ivan", "Judy", "Mallory", "Olivia")
ITEMS = ("apples", "books", "pencils", "cookies", "marbles", "tickets", "stickers", "eggs", "cups", "shirts")
VERBS = ("bought", "sold", "found", "gave away", "baked", "collected", "lost", "packed", "counted", "shared")
TOPICS = (
    "the weather", "a recipe", "homework", "a trip to the mountains", "the quarterly report",
    "a bug in the parser", "the meeting notes", "a birthday party", "the train schedule", "a new library",
)
GREETINGS = ("Hi", "Hello", "Hey", "Good morning", "Thanks", "Sure", "Okay", "Sorry", "Great", "Well")
REQUESTS = (
    "Can you help me with {topic}?", "Please rewrite this so it sounds more natural.",
    "What do you think about {topic}?", "Could you summarize {topic} in two sentences?",
    "No, I meant something shorter.", "That is not what I asked for, try again.",
    "Can you explain it step by step?", "Please check my answer about {topic}.",
    "Give me a friendly comment on this work.", "Why did the tool return an error?",
)
REPLIES = (
    "Of course. Let me look at {topic} first.", "Here is a shorter version of {topic}.",
    "I think the main point is clear, but the ending could be stronger.",
    "The answer is {number}, because each step adds up.", "Let me call the tool to check that.",
    "I could not find anything about {topic}, so I will ask a clarifying question.",
    "You are right, I made a mistake in the second step.", "Nice work! The structure is easy to follow.",
)
FUNCTIONS = ("get_weather", "search_files", "read_file", "run_command", "send_message", "add_numbers", "lookup_user")
CODE_LINES = (
    "def {fn}(path: str, limit: int = {small}) -> list[str]:",
    "    return [line.strip() for line in open(path) if line]",
    "for i in range({small}):\n    total += values[i] * {small}",
    "if result is None:\n    raise ValueError(\"missing result\")",
    "import json\nimport os\nfrom pathlib import Path",
    "class {Name}Client:\n    def __init__(self, url):\n        self.url = url",
    "$ ls -la /tmp && cat notes.txt | grep -n error",
    "x = {{\"id\": {number}, \"ok\": true}}",
    "print(f\"{{name}}: {{value:.2f}}\")",
    "SELECT name, count(*) FROM users WHERE age > {small} GROUP BY name;",
)
UNICODE_SNIPPETS = (
    "café", "naïve", "über", "déjà vu", "你好，世界", "谢谢", "こんにちは", "안녕하세요", "😀", "👍", "🎉",
    "→", "€{number}", "½ cup", "—", "“quoted”", "Привет", "مرحبا",
)


def _number(rng: random.Random) -> str:
    choice = rng.random()
    if choice < 0.6:
        return str(rng.randint(0, 999))
    if choice < 0.85:
        return f"{rng.randint(0, 99)}.{rng.randint(0, 99):02d}"
    return str(rng.randint(1000, 999999))


def _fill(rng: random.Random, template: str) -> str:
    return template.format(
        topic=rng.choice(TOPICS), number=_number(rng), small=rng.randint(1, 20),
        fn=rng.choice(FUNCTIONS), Name=rng.choice(NAMES), name=rng.choice(NAMES).lower(),
    )


def _dialogue(rng: random.Random) -> str:
    lines = []
    for _ in range(rng.randint(2, 6)):
        lines.append(f"{rng.choice(GREETINGS)}, {rng.choice(NAMES)}. {_fill(rng, rng.choice(REQUESTS))}")
        lines.append(_fill(rng, rng.choice(REPLIES)))
    return "\n".join(lines)


def _word_problem(rng: random.Random) -> str:
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    a, b, c = rng.randint(2, 60), rng.randint(1, 30), rng.randint(2, 9)
    return (
        f"{name} had {a} {item}. Then {name} {rng.choice(VERBS)} {b} more and split them into {c} boxes. "
        f"How many {item} are in each box?\n"
        f"First, {a} + {b} = {a + b}. Then {a + b} / {c} = {round((a + b) / c, 2)}. "
        f"So each box has about {(a + b) // c} {item}."
    )


def _json_doc(rng: random.Random) -> str:
    args = {
        rng.choice(("city", "query", "path", "command", "user_id", "text")): rng.choice(
            (rng.choice(NAMES), rng.choice(TOPICS), f"/home/{rng.choice(NAMES).lower()}/notes.txt", _number(rng))
        ),
        rng.choice(("limit", "count", "units", "verbose")): rng.choice((rng.randint(1, 100), True, False, "metric")),
    }
    call = {"name": rng.choice(FUNCTIONS), "arguments": args}
    result = {"ok": rng.random() < 0.8, "value": _number(rng), "items": [rng.choice(ITEMS) for _ in range(rng.randint(0, 3))]}
    indent = rng.choice((None, 2))
    return json.dumps(call, ensure_ascii=False, indent=indent) + "\n" + json.dumps(result, indent=indent)


def _code(rng: random.Random) -> str:
    return "\n".join(_fill(rng, rng.choice(CODE_LINES)) for _ in range(rng.randint(2, 6)))


def _unicode(rng: random.Random) -> str:
    words = [_fill(rng, rng.choice(UNICODE_SNIPPETS)) for _ in range(rng.randint(2, 5))]
    return f"{rng.choice(GREETINGS)}! " + " ".join(words) + f" {_fill(rng, rng.choice(REPLIES))}"


def _phrase(rng: random.Random) -> str:
    det = rng.choice(("the", "a", "this", "my", "your", "our", "their", "every", "some"))
    adj = rng.choice(ADJECTIVES) + " " if rng.random() < 0.5 else ""
    noun = rng.choice(EXTRA_WORDS) if rng.random() < 0.15 else rng.choice(NOUNS)
    return f"{det} {adj}{noun}"


def _sentence(rng: random.Random) -> str:
    subject = rng.choice(("I", "You", "We", "They", "People", rng.choice(NAMES)))
    modal = rng.choice(("will", "can", "should", "might", "want to", "need to", "did not", "often"))
    shape = rng.random()
    if shape < 0.45:
        text = f"{subject} {modal} {rng.choice(VERBS_BASE)} {_phrase(rng)} {rng.choice(FUNCTION_WORDS[-20:])} {_phrase(rng)}"
    elif shape < 0.7:
        text = f"{_phrase(rng).capitalize()} is {rng.choice(ADVERBS)} {rng.choice(ADJECTIVES)}"
    elif shape < 0.9:
        return f"{rng.choice(('Can', 'Could', 'Should', 'Would'))} you {rng.choice(VERBS_BASE)} {_phrase(rng)}?"
    else:
        text = (f"{rng.choice(ADVERBS).capitalize()}, {subject.lower() if subject in ('We', 'They', 'People') else subject} "
                f"{modal} {rng.choice(VERBS_BASE)} it {rng.choice(('and', 'but', 'because', 'so', 'while'))} "
                f"{_phrase(rng)} {rng.choice(('is', 'was', 'seems', 'looks'))} {rng.choice(ADJECTIVES)}")
    return text + rng.choice((".", ".", ".", "!", "?", ","))


def _prose(rng: random.Random) -> str:
    return " ".join(_sentence(rng) for _ in range(rng.randint(3, 9)))


def _transcript(rng: random.Random) -> str:
    """Role headers and reasoning-style text as the chat template lays them out (markup tokens omitted)."""
    parts = [f"system\nYou are a {rng.choice(ADJECTIVES)} assistant. {_sentence(rng)}"]
    for _ in range(rng.randint(1, 3)):
        parts.append(f"user\n{_fill(rng, rng.choice(REQUESTS))} {_sentence(rng)}")
        thought = f"Let me think. The user wants {_phrase(rng)}. {_sentence(rng)} So the answer should be short."
        parts.append(f"assistant\n{thought}\n\n{_fill(rng, rng.choice(REPLIES))} {_sentence(rng)}")
        if rng.random() < 0.3:
            parts.append(f"tool\n{_json_doc(rng)}")
    return "\n".join(parts)


_GENERATORS: tuple[tuple[float, Callable[[random.Random], str]], ...] = (
    (0.3, _prose),
    (0.15, _transcript),
    (0.15, _dialogue),
    (0.12, _word_problem),
    (0.12, _json_doc),
    (0.1, _code),
    (0.06, _unicode),
)


def synthetic_corpus(num_docs: int, *, seed: int = 0) -> Iterator[str]:
    """Yield ``num_docs`` synthetic documents; the same ``seed`` yields the same documents."""
    rng = random.Random(seed)
    weights = [w for w, _ in _GENERATORS]
    makers = [m for _, m in _GENERATORS]
    for _ in range(num_docs):
        (maker,) = rng.choices(makers, weights=weights)
        yield maker(rng)
