"""Screenplay-flavoured filler text: sluglines, titles, action prose, dialogue and Fountain scenes.

Everything takes a seeded `random.Random`, so the same request always yields the same words. The word
banks are module-level tuples so a request does no set-up work.
"""

from __future__ import annotations

import random

LOCATIONS = (
    "WAREHOUSE", "DINER", "ROOFTOP", "SUBWAY PLATFORM", "MOTEL ROOM", "POLICE PRECINCT", "LIGHTHOUSE",
    "HOSPITAL CORRIDOR", "CORNFIELD", "PARKING GARAGE", "RECORDING STUDIO", "TRAIN CAR", "OBSERVATORY",
    "KITCHEN", "HARBOR", "DESERT HIGHWAY", "BALLROOM", "LAUNDROMAT", "ABANDONED CHAPEL", "BACKSTAGE",
)
TIMES = ("DAY", "NIGHT", "DAWN", "DUSK", "CONTINUOUS", "LATER", "MOMENTS LATER")
CHARACTERS = (
    "MAYA", "DETECTIVE REYES", "OLD MAN", "JONAH", "THE STRANGER", "NADIA", "DR. OKAFOR", "LUCAS",
    "CAPTAIN HALE", "IRIS", "WAITRESS", "TEDDY", "MARGOT", "SAMIR", "GHOST", "ELENA",
)
PARENTHETICALS = (
    "(quietly)", "(beat)", "(under her breath)", "(without looking up)", "(smiling)", "(to himself)",
    "(a long pause)", "(into the phone)", "(laughing)", "(cold)",
)
DIALOGUE = (
    "We don't have time for this.",
    "You said it would be over by sunrise.",
    "I kept the key. I always keep the key.",
    "Nobody leaves this room until I know who sent the letter.",
    "It's not the money. It was never the money.",
    "Look at me. Look at me and tell me you didn't know.",
    "The last train left an hour ago.",
    "If you're lying, I'll find out. I always find out.",
    "She's not coming back, is she?",
    "Turn off the lights. Now.",
    "I remember this place. We were kids.",
    "You want the truth? Fine. Sit down.",
    "Every story needs somebody to blame.",
    "That's the thing about promises. They keep.",
    "Don't make me say it twice.",
    "Run the tape again. Slower this time.",
)
ADJECTIVES = (
    "Silent", "Crimson", "Broken", "Last", "Hollow", "Midnight", "Burning", "Quiet", "Lost", "Golden",
    "Forgotten", "Electric", "Northern", "Paper", "Velvet", "Distant",
)
NOUNS = (
    "Harbor", "Witness", "Summer", "Signal", "Promise", "Horizon", "Letter", "Orchard", "Frequency",
    "Debt", "Lantern", "Crossing", "Echo", "Engine", "Kingdom", "Tide",
)
SUBJECTS = (
    "A rain-soaked detective", "A retired stunt pilot", "Two estranged sisters", "A night-shift nurse",
    "A small-town radio host", "A washed-up magician", "An ambitious intern", "A grieving father",
    "A teenage hacker", "A lighthouse keeper",
)
ACTIONS = (
    "uncovers a secret buried beneath the town's oldest church",
    "races against the clock to return a stolen reel of film",
    "must choose between loyalty and the truth",
    "follows a trail of anonymous letters back to her own past",
    "stages one last heist before the city wakes",
    "confronts the man who ruined his career",
    "discovers the storm was never the real danger",
)
STAGE_DIRECTIONS = (
    "Rain hammers the windows. A single bulb flickers overhead.",
    "Footsteps echo somewhere in the dark. Nobody moves.",
    "A kettle screams in the next room, ignored.",
    "Dust hangs in a blade of afternoon light.",
    "The radio crackles, then falls silent.",
    "A car idles outside, headlights sweeping across the wall.",
    "She slides a photograph across the table, face down.",
    "He pockets the key and doesn't look back.",
)
GENRES = ("thriller", "drama", "comedy", "noir", "science fiction", "horror", "romance", "western", "mystery")
TONES = ("tense", "melancholic", "wry", "hopeful", "ominous", "playful", "bittersweet")


def slugline(rng: random.Random) -> str:
    """A scene heading such as ``INT. WAREHOUSE - NIGHT``."""
    return f"{rng.choice(('INT.', 'EXT.', 'INT.', 'INT./EXT.'))} {rng.choice(LOCATIONS)} - {rng.choice(TIMES)}"


def title(rng: random.Random) -> str:
    """A short title-case phrase, e.g. ``The Crimson Harbor``."""
    if rng.random() < 0.5:
        return f"The {rng.choice(ADJECTIVES)} {rng.choice(NOUNS)}"
    return f"{rng.choice(ADJECTIVES)} {rng.choice(NOUNS)}"


def character(rng: random.Random) -> str:
    """A character cue in UPPERCASE."""
    return rng.choice(CHARACTERS)


def dialogue_line(rng: random.Random) -> str:
    return rng.choice(DIALOGUE)


def action_line(rng: random.Random) -> str:
    return rng.choice(STAGE_DIRECTIONS)


def sentence(rng: random.Random) -> str:
    """One sentence of logline-style prose."""
    return f"{rng.choice(SUBJECTS)} {rng.choice(ACTIONS)}."


def summary(rng: random.Random) -> str:
    """A sentence or two of screenplay-ish prose for description/summary fields."""
    text = sentence(rng)
    if rng.random() < 0.6:
        text += " " + action_line(rng)
    return text


def _different(rng: random.Random, bank: tuple[str, ...], previous: str) -> str:
    """A choice from `bank` other than `previous`, so nobody answers themselves with the same line."""
    choice = rng.choice(bank)
    while choice == previous:
        choice = rng.choice(bank)
    return choice


def fountain_scene(rng: random.Random, target_chars: int) -> str:
    """A Fountain scene: heading, an action line, then dialogue blocks until about `target_chars`.

    Each block is an UPPERCASE character cue on its own line, an optional parenthetical and one line
    of dialogue; blocks are separated by a blank line.
    """
    parts = [slugline(rng), action_line(rng)]
    size = len(parts[0]) + len(parts[1]) + 2
    blocks = 0
    speaker = line = ""
    while size < target_chars or blocks < 2:
        speaker = _different(rng, CHARACTERS, speaker)
        line = _different(rng, DIALOGUE, line)
        lines = [speaker]
        if rng.random() < 0.3:
            lines.append(rng.choice(PARENTHETICALS))
        lines.append(line)
        block = "\n".join(lines)
        parts.append(block)
        size += len(block) + 2
        blocks += 1
    return "\n\n".join(parts)
