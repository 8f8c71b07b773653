"""Run ids, and readable names for flow runs: two words as Prefect users know them, and a short suffix.

Two words alone give 22,800 names, so a repeat is as likely as not after ~180 runs of a
history; four hex digits more ('vigilant-bee-3f2a') make that ~46,000 runs.
"""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import Callable
from typing import Any

_ADJECTIVES = ["able", "agile", "amber", "ancient", "aquatic", "arctic", "ardent", "astute", "azure", "bold", "brave", "bright", "brisk", "calm", "candid", "careful", "cheerful", "clever", "cobalt", "cosmic", "crimson", "curious", "daring", "dazzling", "eager", "earnest", "electric", "elegant", "emerald", "fearless", "fervent", "festive", "fiery", "fluffy", "friendly", "gentle", "gigantic", "glossy", "golden", "graceful", "groovy", "handsome", "happy", "hardy", "hasty", "hidden", "honest", "humble", "icy", "idealistic", "imaginary", "impartial", "indigo", "jolly", "jovial", "keen", "kind", "lively", "lucky", "majestic", "mellow", "merry", "mighty", "modest", "nimble", "noble", "olive", "opal", "optimistic", "outrageous", "patient", "peculiar", "phenomenal", "placid", "polite", "precious", "proud", "quick", "quiet", "radiant", "rapid", "resilient", "robust", "ruby", "rustic", "sandy", "scarlet", "serene", "shiny", "silver", "sleek", "smart", "snappy", "spirited", "splendid", "spry", "steady", "stellar", "sturdy", "sunny", "swift", "tactful", "tangerine", "tidy", "tireless", "tranquil", "true", "unique", "upbeat", "valiant", "vagabond", "velvet", "vermilion", "vigilant", "vivid", "warm", "wise", "witty", "zealous", "zesty"]

_ANIMALS = ["albatross", "alligator", "alpaca", "antelope", "armadillo", "badger", "barracuda", "bat", "bear", "beaver", "bee", "beetle", "bison", "bobcat", "buffalo", "butterfly", "camel", "capybara", "cardinal", "caribou", "cat", "chameleon", "cheetah", "chipmunk", "cicada", "clam", "cobra", "cockatoo", "condor", "coyote", "crab", "crane", "cricket", "crocodile", "crow", "deer", "dingo", "dolphin", "donkey", "dormouse", "dove", "dragonfly", "duck", "eagle", "eel", "elephant", "elk", "emu", "falcon", "ferret", "finch", "flamingo", "fox", "frog", "gazelle", "gecko", "gerbil", "gibbon", "giraffe", "gnu", "goat", "goose", "gopher", "gorilla", "grasshopper", "grouse", "gull", "hare", "hawk", "hedgehog", "heron", "hippo", "hornet", "horse", "hound", "hyena", "ibex", "ibis", "iguana", "impala", "jackal", "jackdaw", "jaguar", "jellyfish", "kangaroo", "kingfisher", "kiwi", "koala", "lemur", "leopard", "lion", "lizard", "llama", "lobster", "lynx", "macaw", "magpie", "mammoth", "manatee", "mandrill", "marmot", "meerkat", "mink", "mole", "mongoose", "moose", "moth", "mouse", "mule", "narwhal", "newt", "nightingale", "ocelot", "octopus", "okapi", "orca", "oriole", "osprey", "ostrich", "otter", "owl", "ox", "panda", "panther", "parrot", "partridge", "peacock", "pelican", "penguin", "pheasant", "pig", "pigeon", "platypus", "porcupine", "porpoise", "puffin", "puma", "python", "quail", "rabbit", "raccoon", "raven", "reindeer", "rhino", "robin", "salamander", "salmon", "seahorse", "seal", "shark", "sheep", "shrew", "skink", "skunk", "sloth", "snail", "snake", "sparrow", "spider", "squid", "squirrel", "starfish", "stingray", "stork", "swan", "tapir", "tarsier", "termite", "tiger", "toad", "tortoise", "toucan", "trout", "turkey", "turtle", "viper", "vole", "vulture", "wallaby", "walrus", "wasp", "weasel", "whale", "wildcat", "wolf", "wombat", "woodpecker", "wren", "yak", "zebra"]

_random = random.Random()
# A forked child must not repeat its parent's names.
os.register_at_fork(after_in_child=_random.seed)


def run_name() -> str:
    """A fresh name such as ``'vigilant-bee-3f2a'``."""
    return f"{_random.choice(_ADJECTIVES)}-{_random.choice(_ANIMALS)}-{_random.getrandbits(16):04x}"


_ids = random.Random(os.urandom(32))
# A forked child must not repeat its parent's ids.
os.register_at_fork(after_in_child=lambda: _ids.seed(os.urandom(32)))


_VERSION_4_CLEAR = ~((0xC000 << 48) | (0xF000 << 64))
_VERSION_4_SET = (0x8000 << 48) | (4 << 76)
_new_uuid = object.__new__
_set_slot = object.__setattr__
_UNKNOWN_SAFETY = uuid.SafeUUID.unknown  # looked up once: an Enum member is a descriptor


def new_id() -> uuid.UUID:
    """A version-4 UUID from a generator seeded once from the OS.

    What ``uuid.UUID(int=..., version=4)`` makes, with its variant and version bits set
    here: every task run takes an id, and ``UUID.__init__``, which checks each of its five
    ways in, costs more than drawing the bits.
    """
    made = _new_uuid(uuid.UUID)
    _set_slot(made, "int", (_ids.getrandbits(128) & _VERSION_4_CLEAR) | _VERSION_4_SET)
    _set_slot(made, "is_safe", _UNKNOWN_SAFETY)
    return made  # type: ignore[no-any-return]


def from_template(
    template: str | Callable[[], str], parameters: dict[str, Any], owner: str, option: str
) -> str:
    """A run name from a ``task_run_name`` or ``flow_run_name`` option: a template filled with
    the run's parameters, or a function called; one sentence naming ``owner`` if it fails."""
    try:
        return str(template() if callable(template) else template.format(**parameters))
    except Exception as exc:
        raise ValueError(
            f"{owner}: {option} {template!r} could not be made: {type(exc).__name__}: {exc}"
        ) from None
