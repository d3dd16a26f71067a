"""A generated intent-classification corpus as TFDS datasets: text configs' offline run.

No text corpus ships with an installed package (scikit-learn's downloads), so this one is
generated, deterministically, from the templates and slot words below: the same examples
on every machine, no download.

``synthetic_intents`` (like ``clinc_oos``, in-scope): ``text`` and ``intent`` (one of 15),
splits ``train`` (3,000: 200 per intent), ``validation`` (600) and ``test`` (1,200).
``synthetic_multi_intents`` (like ``goemotions``, multi-label): ``text`` holding one to
three requests joined ("set a timer for 5 minutes and what's the weather in rome") and
one boolean feature per intent, splits ``train`` (4,000), ``validation`` (600), ``test``
(1,200).

What makes it a learning problem rather than a lookup:
- the intents come in confusable groups that share their slot words: flights and trains
  (cities, days), weather and world time (cities), alarms, timers and reminders (times,
  durations), playing music and adding to a playlist (songs, artists), transfers and
  balances (accounts, amounts), food delivery and table reservations (food, cuisines),
  translations and definitions;
- ``validation`` and ``test`` use only held-out templates (3 per intent, none seen in
  training: new phrasings of the same requests) and, for half of their slots, held-out
  slot words (unseen cities, songs, words: ``<unk>`` to a tokenizer built on train), with
  held-out openers, closers and joiners;
- every split has noise: each word is dropped with probability 0.1 and misspelt (two
  letters swapped) with probability 0.03.
A bag-of-words logistic regression (scikit-learn, the words seen in training) reaches 80%
test accuracy on ``synthetic_intents`` (chance 6.7%) and micro F1 0.70 on the multi-label
one; no test text occurs in training.

``generate(split, multi)`` returns the examples (text, intent ids, templates used), which is
what the builders write; tests/test_text_offline.py checks the properties above.
"""
from typing import NamedTuple

import numpy as np
import tensorflow_datasets as tfds

# Any change to what is generated needs a new VERSION of both builders: a prepared
# dataset is reused by version.
SEED = 20240607
SPLIT_SIZES = {"train": 3000, "validation": 600, "test": 1200}
MULTI_SPLIT_SIZES = {"train": 4000, "validation": 600, "test": 1200}
WORD_DROPOUT, TYPO = 0.1, 0.03
HELD_OUT_SLOT = 0.5  # validation/test: the chance that a slot takes a held-out word

# Slot words: (training, held out).
SLOTS = {
    "city": (["paris", "london", "tokyo", "berlin", "rome", "madrid", "boston", "chicago",
              "denver", "seattle", "dublin", "vienna", "sydney", "cairo"],
             ["lisbon", "prague", "oslo", "austin", "miami", "toronto", "seoul", "lima"]),
    "day": (["today", "tomorrow", "tonight", "on monday", "on friday", "this weekend",
             "next week", "on saturday"],
            ["on tuesday", "on sunday", "this evening", "next month"]),
    "time": (["7 am", "6:30", "8 pm", "noon", "9 o'clock", "5:45 am", "10 pm"],
             ["midnight", "6 am", "7:15", "11 pm"]),
    "duration": (["5 minutes", "ten minutes", "an hour", "20 minutes", "half an hour",
                  "90 seconds"],
                 ["two hours", "15 minutes", "45 seconds"]),
    "task": (["call mom", "pay the rent", "buy milk", "water the plants", "take my pills",
              "email the landlord", "pick up the kids"],
             ["renew my passport", "feed the cat", "book a dentist appointment"]),
    "artist": (["the beatles", "adele", "miles davis", "taylor swift", "queen", "nirvana",
                "beyonce", "coldplay"],
               ["bob marley", "radiohead", "drake", "abba"]),
    "genre": (["jazz", "rock", "classical", "hip hop", "country", "lo-fi"],
              ["reggae", "blues", "techno"]),
    "song": (["bohemian rhapsody", "hey jude", "hello", "yesterday", "shake it off", "yellow"],
             ["imagine", "halo", "wonderwall"]),
    "playlist": (["workout", "road trip", "chill", "study", "party", "morning"],
                 ["running", "dinner", "sleep"]),
    "account": (["checking", "savings", "joint", "business"], ["credit card", "brokerage"]),
    "amount": (["50 dollars", "$200", "100 euros", "20 bucks", "500 dollars", "$75"],
               ["1,000 dollars", "30 pounds", "$15"]),
    "person": (["my sister", "john", "my landlord", "alex", "my mom", "sarah"],
               ["my brother", "maria", "dave"]),
    "food": (["pizza", "sushi", "tacos", "a burger", "pad thai", "curry", "fried chicken",
              "noodles"],
             ["ramen", "a burrito", "dumplings", "falafel"]),
    "cuisine": (["italian", "mexican", "thai", "indian", "chinese", "french"],
                ["greek", "korean", "ethiopian"]),
    "people": (["two", "four", "6", "a party of 8", "three"], ["five", "ten", "a group of 12"]),
    "language": (["french", "spanish", "german", "japanese", "italian", "russian"],
                 ["portuguese", "korean", "dutch"]),
    "phrase": (["good morning", "thank you", "where is the station", "i love you",
                "how much is this", "excuse me", "cheers"],
               ["see you soon", "happy birthday", "the bill please"]),
    "word": (["serendipity", "ephemeral", "ubiquitous", "petrichor", "quixotic", "gregarious",
              "laconic"],
             ["sonder", "mellifluous", "obsequious"]),
}
SLOTS["city2"], SLOTS["account2"] = SLOTS["city"], SLOTS["account"]  # a second, distinct one

# Intent: (training templates, held-out templates).
INTENTS = {
    "book_flight": (
        ["book a flight from {city} to {city2} {day}", "i need a plane ticket to {city} {day}",
         "find me flights to {city}", "get me on a flight to {city} {day}",
         "i want to fly to {city} {day}", "reserve a seat on the next flight to {city}",
         "are there any cheap flights from {city} to {city2}"],
        ["fly me out to {city} {day}", "book me a plane from {city} to {city2}",
         "which flights go to {city} {day}"]),
    "book_train": (
        ["book a train from {city} to {city2} {day}", "i need train tickets to {city} {day}",
         "find me a train to {city}", "get me a rail ticket to {city} {day}",
         "i want to take the train to {city}", "reserve a seat on the next train to {city}",
         "when is the next train from {city} to {city2}"],
        ["book me a train seat to {city} {day}", "is there a train going to {city} {day}",
         "i'd like to go by rail from {city} to {city2}"]),
    "weather": (
        ["what's the weather in {city} {day}", "will it rain in {city} {day}",
         "do i need an umbrella {day}", "how hot will it be in {city} {day}",
         "is it going to snow in {city}", "what is the forecast for {city} {day}",
         "how cold is it in {city} right now"],
        ["should i bring an umbrella to {city} {day}", "is it sunny or going to rain in {city}",
         "tell me the forecast temperature in {city} {day}"]),
    "world_time": (
        ["what time is it in {city}", "what's the local time in {city}",
         "tell me the current time in {city}",
         "what is the time difference between {city} and {city2}",
         "is it morning in {city} right now", "what time zone is {city} in",
         "how many hours ahead is {city}"],
        ["is it night time in {city} now", "what's the time over in {city}",
         "how many hours behind is {city} from {city2}"]),
    "set_alarm": (
        ["set an alarm for {time}", "wake me up at {time} {day}", "i need an alarm at {time}",
         "alarm for {time} please", "make sure i'm up by {time} {day}",
         "set my alarm to {time} {day}", "can you wake me at {time}"],
        ["get me out of bed with an alarm at {time}", "put an alarm on for {time} {day}",
         "i have to be up by {time}, wake me"]),
    "set_timer": (
        ["set a timer for {duration}", "start a {duration} timer", "count down {duration}",
         "timer for {duration} please", "let me know in {duration}",
         "start a countdown of {duration}", "time {duration} for the pasta"],
        ["give me a {duration} countdown", "tell me when {duration} are up",
         "put a timer on for {duration}"]),
    "reminder": (
        ["remind me to {task} {day}", "remind me to {task} at {time}",
         "don't let me forget to {task}", "set a reminder to {task} {day}",
         "i need a reminder to {task} at {time}", "make a note to {task} {day}",
         "remember that i have to {task}"],
        ["ping me with a reminder to {task} at {time}", "nudge me {day} to remember to {task}",
         "i must not forget to {task} {day}"]),
    "play_music": (
        ["play {song} by {artist}", "put on some {genre}", "i want to hear {artist}",
         "start playing {song}", "play my {playlist} playlist", "shuffle songs by {artist}",
         "turn on {genre} radio"],
        ["blast {artist} on the radio", "let me hear {song}", "queue up some {genre} to play"]),
    "add_to_playlist": (
        ["add {song} to my {playlist} playlist", "put {song} by {artist} on my {playlist} list",
         "save this song to {playlist}", "add {artist} to my {playlist} playlist",
         "include {song} in the {playlist} mix", "i want {song} in my {playlist} playlist",
         "add this track to my {playlist} playlist"],
        ["throw {song} onto the {playlist} playlist", "append {artist} to the {playlist} list",
         "stick this tune in my {playlist} mix"]),
    "transfer": (
        ["transfer {amount} from {account} to {account2}", "send {amount} to {person}",
         "move {amount} into my {account} account", "pay {person} {amount}",
         "wire {amount} to {person} {day}", "i want to transfer money to my {account} account",
         "put {amount} from {account} into {account2}"],
        ["shift {amount} from {account} over to {account2}",
         "give {person} {amount} from my {account} account",
         "can i send {person} some money {day}"]),
    "balance": (
        ["what's my {account} balance", "how much money is in my {account} account",
         "check my {account} balance", "do i have {amount} in {account}",
         "show me the balance of my {account} account", "how much do i have in {account}",
         "what is left in my {account} account"],
        ["am i overdrawn on my {account} account", "tell me how much cash is left in {account}",
         "is there at least {amount} in my {account} account"]),
    "order_food": (
        ["order {food} for delivery", "i want {food} delivered {day}", "get me some {food}",
         "can i order {cuisine} takeout", "deliver {food} to my house",
         "order me {food} from the {cuisine} place", "i'm hungry, order {food}"],
        ["have {food} delivered to me", "grab me {cuisine} takeout",
         "bring me {food} at {time}"]),
    "book_restaurant": (
        ["book a table for {people} at {time}", "reserve a table for {people} {day}",
         "i need a dinner reservation for {people} at {time}",
         "find a {cuisine} restaurant with a table for {people}",
         "make a reservation at the {cuisine} place {day}",
         "can we get a table for {people} {day} at {time}",
         "book us a {cuisine} dinner for {people}"],
        ["hold a table for {people} at {time}", "i'd like to dine at a {cuisine} restaurant {day}",
         "get us seats for {people} at the {cuisine} restaurant"]),
    "translate": (
        ["how do you say {phrase} in {language}", "translate {phrase} to {language}",
         "what is {phrase} in {language}", "say {phrase} in {language}",
         "what's the {language} for {phrase}", "translate this into {language}: {phrase}",
         "how would i say {phrase} in {language}"],
        ["give me {phrase} in {language}", "{phrase} in {language} please",
         "i need the {language} version of {phrase}"]),
    "definition": (
        ["what does {word} mean", "define {word}", "what is the meaning of {word}",
         "look up the definition of {word}", "what's the definition of {word}",
         "explain the word {word}", "tell me what {word} means"],
        ["meaning of {word}?", "is {word} a real word and what does it mean",
         "give me a definition for {word}"]),
}
INTENT_NAMES = tuple(INTENTS)

# Openers, closers, and (multi-label) the joiners between requests: (training, held out).
OPENERS = (["", "", "", "", "hey", "hi there,", "ok so", "excuse me,", "um", "please"],
           ["", "", "hello,", "alright,", "listen,"])
CLOSERS = (["", "", "", "", "please", "thanks", "thank you", "right away", "if you can"],
           ["", "", "cheers", "asap", "pretty please"])
JOINERS = ([" and ", " and then ", ", also ", ". also ", " and also "],
           [", plus ", " as well as ", "; then "])


def _pick(rng: np.random.Generator, choices: list):
  return choices[rng.integers(len(choices))]


def _noisy(rng: np.random.Generator, text: str) -> str:
  """``text`` with words dropped (keeping at least two) and misspelt."""
  words = text.split()
  kept = [w for w in words if rng.random() >= WORD_DROPOUT]
  if len(kept) < 2:
    kept = words
  out = []
  for word in kept:
    if len(word) > 3 and rng.random() < TYPO:
      i = int(rng.integers(len(word) - 1))
      word = word[:i] + word[i + 1] + word[i] + word[i + 2:]
    out.append(word)
  return " ".join(out)


class Example(NamedTuple):
  text: str
  labels: tuple[int, ...]  # intent ids, sorted: one for synthetic_intents
  templates: tuple[str, ...]  # the template of each request, unfilled


def _request(rng: np.random.Generator, intent: str, held_out: bool) -> tuple[str, str]:
  """One request of ``intent`` and its template: the template with its slots filled
  (held-out templates and, for half of the slots, held-out words when ``held_out``)."""
  template = _pick(rng, INTENTS[intent][int(held_out)])
  values = {}
  for name in SLOTS:
    if "{" + name + "}" not in template:
      continue
    pool = SLOTS[name][int(held_out and rng.random() < HELD_OUT_SLOT)]
    taken = {values.get(name.rstrip("2"))} if name.endswith("2") else set()
    values[name] = _pick(rng, [v for v in pool if v not in taken] or pool)
  return template.format(**values), template


def _wrap(rng: np.random.Generator, body: str, held_out: bool) -> str:
  parts = [_pick(rng, OPENERS[int(held_out)]), body, _pick(rng, CLOSERS[int(held_out)])]
  return " ".join(p for p in parts if p)


def generate(split: str, multi: bool = False) -> list[Example]:
  """The examples of ``split`` (train, validation or test): ``synthetic_intents``'s, or
  ``synthetic_multi_intents``'s when ``multi``; the same on every call and machine.

  Single-label: intents balanced and interleaved (example i has intent i % 15). Multi:
  one request (probability 0.4), two (0.4) or three (0.2) of distinct intents, joined.
  """
  sizes = MULTI_SPLIT_SIZES if multi else SPLIT_SIZES
  rng = np.random.default_rng([SEED, 10 * multi + list(sizes).index(split)])
  held_out = split != "train"
  out = []
  for i in range(sizes[split]):
    if multi:
      count = 1 + int(rng.choice(3, p=[0.4, 0.4, 0.2]))
      labels = [int(k) for k in rng.choice(len(INTENT_NAMES), count, replace=False)]
    else:
      labels = [i % len(INTENT_NAMES)]
    body, template = _request(rng, INTENT_NAMES[labels[0]], held_out)
    templates = [template]
    for label in labels[1:]:
      joiner = _pick(rng, JOINERS[int(held_out)])
      request, template = _request(rng, INTENT_NAMES[label], held_out)
      body += joiner + request
      templates.append(template)
    out.append(Example(_noisy(rng, _wrap(rng, body, held_out)), tuple(sorted(labels)),
                       tuple(templates)))
  return out


class SyntheticIntents(tfds.core.GeneratorBasedBuilder):
  """15 generated intents, one per text (generated, offline)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUNDLED = True  # generated locally; never downloaded

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self, description=__doc__,
        features=tfds.features.FeaturesDict({
            "text": tfds.features.Text(),
            "intent": tfds.features.ClassLabel(names=INTENT_NAMES),
        }),
        supervised_keys=("text", "intent"))

  def _split_generators(self, dl_manager):
    return {split: self._generate_examples(split) for split in SPLIT_SIZES}

  def _generate_examples(self, split):
    for i, example in enumerate(generate(split)):
      yield i, {"text": example.text, "intent": example.labels[0]}


class SyntheticMultiIntents(tfds.core.GeneratorBasedBuilder):
  """One to three of 15 generated intents per text, a boolean feature each (generated,
  offline)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUNDLED = True

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self, description=__doc__,
        features=tfds.features.FeaturesDict({
            "text": tfds.features.Text(),
            **{name: tfds.features.Scalar(np.bool_) for name in INTENT_NAMES},
        }))

  def _split_generators(self, dl_manager):
    return {split: self._generate_examples(split) for split in MULTI_SPLIT_SIZES}

  def _generate_examples(self, split):
    for i, example in enumerate(generate(split, multi=True)):
      yield i, {"text": example.text,
                **{name: k in example.labels for k, name in enumerate(INTENT_NAMES)}}
