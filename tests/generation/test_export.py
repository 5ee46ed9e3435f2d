"""Exports, with the Fountain output checked by a real Fountain parser (screenplain)."""

from __future__ import annotations

import copy
import io
import json
from typing import Any

import pytest
from screenplain.parsers import fountain
from screenplain.types import Action as FountainAction
from screenplain.types import Dialog, DualDialog, Screenplay, Section, Slug, Transition

from services.generation.export import (
    Action,
    DialogueLine,
    ScriptElement,
    parse_dialogue,
    scene_heading,
    to_document,
    to_fountain,
    to_json,
    to_text,
)
from services.generation.export.script import title
from services.generation.project import Project

ACTS = [
    {"key": "setup", "name": "Act One: Setup", "description": "Introduce the crew."},
    {"key": "confrontation", "name": "Act Two: Confrontation", "description": "Things go wrong."},
    {"key": "resolution", "name": "Act Three: Resolution", "description": "The score."},
]


WHEN = "2026-11-29T00:00:00+00:00"


def project_of(doc: dict[str, Any]) -> Project:
    """A typed project from a test's document (the acts of a one-act template unless it names its own)."""
    defaults: dict[str, Any] = {"project_path": "p", "title": "T", "story_input": {"title": "T"},
                                "template": {"id": "t", "name": "T", "acts": [{"key": "a", "name": "A"}]},
                                "created_at": WHEN, "updated_at": WHEN}
    return Project.model_validate({**defaults, **doc})


def scene(slugline: str, description: str, title: str = "A scene", characters: tuple[str, ...] = ("ANA",)
          ) -> dict[str, Any]:
    return {"slugline": slugline, "title": title, "description": description, "characters": list(characters)}


def make_document() -> dict[str, Any]:
    return {
        "project_path": "the-last-heist-3f9a2c",
        "title": "The Last Heist",
        "story_input": {
            "title": "The Last Heist",
            "logline": "A retired safecracker takes one last job.",
            "genre": "Thriller",
            "author": "Ada Writer",
            "tone": ["tense", "wry"],
        },
        "template": {"id": "three-act", "name": "Three-Act Structure", "acts": ACTS},
        "structure": {
            "setup": {"name": "Setup", "description": "Maya gets the call and assembles her crew."},
            "confrontation": {"name": "Confrontation", "description": "The vault is not what they were told."},
        },
        "plot_points": {
            "setup": ["Maya is offered the job.", "Jonas joins."],
            "confrontation": ["The alarm trips early."],
        },
        "scenes": {
            "setup": [
                {
                    "slugline": "INT. WAREHOUSE - NIGHT",
                    "title": "The pitch",
                    "description": "Rain hammers a tin roof. MAYA (40s) circles a table of blueprints.",
                    "characters": ["MAYA", "JONAS"],
                },
                {
                    "slugline": "MAYA'S APARTMENT - LATER",  # not INT/EXT: must be forced with "."
                    "title": "Second thoughts",
                    "description": "BLACKOUT.\nThe fridge hums back to life.\n\n# of exits: two.",
                    "characters": ["MAYA", "McCLANE"],
                },
            ],
            "confrontation": [
                {
                    "slugline": "EXT. BANK ROOFTOP - NIGHT",
                    "title": "Up top",
                    "description": "CUT TO:",
                    "characters": ["MAYA", "JONAS", "DeSOTO"],
                },
            ],
            "resolution": [
                {
                    "slugline": "int./ext. getaway van - dawn",
                    "title": "Away",
                    "description": "They drive into the sun.",
                    "characters": ["MAYA"],
                },
            ],
        },
        "dialogue": {
            "setup:0": (
                "MAYA\nWe go tonight.\n\n"
                "JONAS\n(quietly)\nThen we go tonight.\n(beat)\nAnd we don't come back.\n\n"
                "THE LIGHTS DIE.\n\n"
                "Somewhere a dog barks.\n\n"
                "MAYA (V.O.)\nI should have said no.\n"
            ),
            "setup:1": (
                "McCLANE\n(into phone) You're late.\n\n"
                "!SIRENS in the distance.\nMaya freezes.\n\n"
                "MAYA (CONT'D)\n!Fine.\n"
            ),
            "confrontation:0": (
                "DeSOTO\nThe vault's empty.\n\n"
                "@Jonas\nThen where's the money?\n\n"
                "MAYA (O.S.)\n(shouting)\nEveryone down!\n"
            ),
            "missing:7": "ORPHAN\nNobody says this.\n",
        },
        "created_at": WHEN,
        "updated_at": WHEN,
    }


def make_project() -> Project:
    return Project.model_validate(make_document())


def parse_fountain(text: str) -> Screenplay:
    return fountain.parse(io.StringIO(text))


def scene_elements(project: Project) -> list[tuple[str, list[ScriptElement]]]:
    result = []
    for act in ACTS:
        for index, one in enumerate(project.scenes.get(act["key"], [])):
            text = project.dialogue.get(f"{act['key']}:{index}", "")
            result.append((one.slugline, parse_dialogue(text, one.characters)))
    return result


def expected_blocks(element: DialogueLine) -> tuple[str, list[tuple[bool, str]]]:
    """What screenplain's Dialog should contain for a parsed speech."""
    blocks = [(True, element.parenthetical)] if element.parenthetical else []
    blocks += [(line.startswith("("), line) for line in element.line.split("\n") if line]
    return element.character, blocks


def dialog_blocks(dialog: Dialog) -> tuple[str, list[tuple[bool, str]]]:
    return str(dialog.character), [(is_paren, str(text)) for is_paren, text in dialog.blocks]


# --------------------------------------------------------------------------- parse_dialogue


def test_parse_dialogue_blocks() -> None:
    elements = parse_dialogue(make_project().dialogue["setup:0"])
    assert elements == [
        DialogueLine("MAYA", None, "We go tonight."),
        DialogueLine("JONAS", "(quietly)", "Then we go tonight.\n(beat)\nAnd we don't come back."),
        Action("THE LIGHTS DIE."),
        Action("Somewhere a dog barks."),
        DialogueLine("MAYA (V.O.)", None, "I should have said no."),
    ]


def test_parse_dialogue_cues() -> None:
    text = (
        "McCLANE\n(into phone) You're late.\n\n"
        "@Jonas\nHi.\n\n"
        "Dr. Vance\nNot a cue without the cast list.\n\n"
        "INT. VAULT - NIGHT\nA heading is not a cue.\n\n"
        "R2-D2 (O.S.) (CONT'D)\nBeep.\n\n"
        "JOSÉ\nHola.\n\n"
        "!LOUD NOISES\nEveryone ducks.\n"
    )
    assert parse_dialogue(text, ["McCLANE"]) == [
        DialogueLine("McCLANE", "(into phone)", "You're late."),
        DialogueLine("Jonas", None, "Hi."),
        Action("Dr. Vance\nNot a cue without the cast list."),
        Action("INT. VAULT - NIGHT\nA heading is not a cue."),
        DialogueLine("R2-D2 (O.S.) (CONT'D)", None, "Beep."),
        DialogueLine("JOSÉ", None, "Hola."),
        Action("LOUD NOISES\nEveryone ducks."),
    ]
    assert parse_dialogue("mcclane\nHi.", ["McCLANE"]) == [DialogueLine("mcclane", None, "Hi.")]


def test_parse_dialogue_whitespace_and_empty() -> None:
    assert parse_dialogue("") == []
    assert parse_dialogue("  \r\n\r\n  MAYA  \r\n   Go.  \r\n \r\n") == [DialogueLine("MAYA", None, "Go.")]
    assert parse_dialogue("JONAS\n(beat)") == [DialogueLine("JONAS", "(beat)", "")]


# --------------------------------------------------------------------------- Fountain


def test_fountain_round_trip_through_screenplain() -> None:
    project = make_project()
    text = to_fountain(project)
    screenplay = parse_fountain(text)

    assert screenplay.title_page["Title"] == ["The Last Heist"]
    assert screenplay.title_page["Credit"] == ["Written by"]
    assert screenplay.title_page["Author"] == ["Ada Writer"]

    paragraphs = list(screenplay)
    assert not any(isinstance(p, (DualDialog, Transition)) for p in paragraphs)

    sections = [(str(p.text), p.level, p.synopsis) for p in paragraphs if isinstance(p, Section)]
    assert sections == [
        ("Setup", 1, "Maya gets the call and assembles her crew."),
        ("Confrontation", 1, "The vault is not what they were told."),
        ("Act Three: Resolution", 1, "The score."),  # no generated structure: the template's act
    ]

    slugs = [p for p in paragraphs if isinstance(p, Slug)]
    scenes = scene_elements(project)
    assert [str(s.line) for s in slugs] == [slugline.upper() for slugline, _ in scenes]
    assert [str(s.line) for s in slugs][:3] == [
        "INT. WAREHOUSE - NIGHT", "MAYA'S APARTMENT - LATER", "EXT. BANK ROOFTOP - NIGHT",
    ]
    assert [s.synopsis for s in slugs] == ["The pitch", "Second thoughts", "Up top", "Away"]

    # Walk the parsed script scene by scene: the dialogue must match parse_dialogue, in order.
    per_scene: list[list[Any]] = []
    for paragraph in paragraphs:
        if isinstance(paragraph, Slug):
            per_scene.append([])
        elif per_scene and isinstance(paragraph, (Dialog, FountainAction)):
            per_scene[-1].append(paragraph)
    assert len(per_scene) == len(scenes)
    for (slugline, elements), parsed in zip(scenes, per_scene, strict=True):
        got_dialog = [dialog_blocks(p) for p in parsed if isinstance(p, Dialog)]
        want_dialog = [expected_blocks(e) for e in elements if isinstance(e, DialogueLine)]
        assert got_dialog == want_dialog, slugline
        # Actions: the scene description paragraphs, then the dialogue's action paragraphs.
        description = next(s.description for act in project.scenes.values() for s in act if s.slugline == slugline)
        want_actions = [p for p in description.split("\n\n") if p] + [
            e.text for e in elements if isinstance(e, Action)
        ]
        got_actions = ["\n".join(str(line) for line in p.lines) for p in parsed if isinstance(p, FountainAction)]
        assert got_actions == want_actions, slugline

    # Spot-check the tricky cases explicitly.
    all_dialog = [dialog_blocks(p) for p in paragraphs if isinstance(p, Dialog)]
    characters = [character for character, _ in all_dialog]
    assert characters == ["MAYA", "JONAS", "MAYA (V.O.)", "McCLANE", "MAYA (CONT'D)", "DeSOTO", "Jonas",
                          "MAYA (O.S.)"]
    assert all_dialog[1] == ("JONAS", [(True, "(quietly)"), (False, "Then we go tonight."), (True, "(beat)"),
                                       (False, "And we don't come back.")])
    assert all_dialog[3] == ("McCLANE", [(True, "(into phone)"), (False, "You're late.")])
    assert "ORPHAN" not in text


def test_fountain_source_is_canonical() -> None:
    text = to_fountain(make_project())
    lines = text.split("\n")
    assert lines[:3] == ["Title: The Last Heist", "Credit: Written by", "Author: Ada Writer"]
    assert "\n\n.MAYA'S APARTMENT - LATER\n\n" in text
    assert "\n\nINT. WAREHOUSE - NIGHT\n\n" in text
    assert "\n\nINT./EXT. GETAWAY VAN - DAWN\n\n" in text
    assert "\n\n@McCLANE\n(into phone)\nYou're late.\n\n" in text
    assert "\n\nMAYA (V.O.)\nI should have said no.\n\n" in text
    assert "\n\n!BLACKOUT.\nThe fridge hums back to life.\n\n" in text
    assert "\n\n!# of exits: two.\n\n" in text
    assert "\n\n!THE LIGHTS DIE.\n\n" in text
    assert "\n\n!CUT TO:\n\n" in text
    assert "\n\n[[Plot point 1: Maya is offered the job.]]\n\n" in text
    assert "\n\n\n" not in text
    assert to_fountain(make_project()) == text  # deterministic


@pytest.mark.parametrize(
    "line",
    [
        "BANG.",
        "CUT TO:",
        "INT. NOT A HEADING",
        "ext. lowercase heading",
        ".5 seconds later",
        "> centered <",
        "= not a synopsis",
        "===",
        "# not a section",
        "~not lyrics",
        "@not a character",
        "!!! exclamation",
        "BOOM (offscreen) rattles the glass",
    ],
)
def test_fountain_action_escaping(line: str) -> None:
    project = project_of({"scenes": {"a": [scene("INT. ROOM - DAY", f"{line}\nThen quiet.")]},
                          "dialogue": {"a:0": f"{line}\n\n!{line}"}})
    paragraphs = list(parse_fountain(to_fountain(project)))
    body = [p for p in paragraphs if not isinstance(p, (Section, Slug))]
    assert all(isinstance(p, FountainAction) for p in body), body
    got = ["\n".join(str(x) for x in p.lines) for p in body]
    expected_dialogue = [e.text for e in parse_dialogue(project.dialogue["a:0"]) if isinstance(e, Action)]
    assert got == [f"{line}\nThen quiet.", *expected_dialogue]


def test_fountain_partial_and_empty_projects() -> None:
    untitled = project_of({"title": "", "story_input": {"logline": "x"}})
    assert parse_fountain(to_fountain(untitled)).title_page["Title"] == ["Untitled"] and title(untitled) == "Untitled"
    only_structure = project_of({"title": "Only Structure",
                                 "structure": {"a": {"name": "Hook", "description": "It begins."}}})
    paragraphs = list(parse_fountain(to_fountain(only_structure)))
    assert [(str(p.text), p.synopsis) for p in paragraphs if isinstance(p, Section)] == [("Hook", "It begins.")]
    assert not [p for p in paragraphs if isinstance(p, Slug)]
    assert scene_heading(" ..int.  house ") == "INT. HOUSE" and scene_heading("", "Opening") == "OPENING"


def test_fountain_notes_and_boneyard_do_not_swallow_text() -> None:
    project = project_of({"scenes": {"a": [scene("INT. ROOM - DAY", "He types [[this]] and /* that */.")]},
                          "dialogue": {"a:0": "MAYA\nA [[secret]] and /* more */."}})
    paragraphs = list(parse_fountain(to_fountain(project)))
    actions = [p for p in paragraphs if isinstance(p, FountainAction)]
    dialogs = [p for p in paragraphs if isinstance(p, Dialog)]
    assert "this" in str(actions[0].lines[0]) and "that" in str(actions[0].lines[0])
    assert "secret" in str(dialogs[0].blocks[0][1]) and "more" in str(dialogs[0].blocks[0][1])


# --------------------------------------------------------------------------- text and JSON


def test_to_text_contains_everything() -> None:
    project = make_project()
    text = to_text(project)
    assert text.startswith("THE LAST HEIST\n")
    assert "Logline: A retired safecracker takes one last job." in text
    assert "Tone: tense, wry" in text
    assert "Template: Three-Act Structure" in text
    for act in project.structure.values():
        assert act.name in text
    for points in project.plot_points.values():
        for point in points:
            assert point in text
    for slugline, elements in scene_elements(project):
        assert text.count(slugline.upper()) == 2  # outline + screenplay
        for element in elements:
            if isinstance(element, Action):
                assert element.text in text
            else:
                assert element.character in text
                if element.parenthetical:
                    assert element.parenthetical in text
                for line in element.line.split("\n"):
                    assert line in text
    for act in project.scenes.values():
        for one in act:
            assert one.title in text
            for line in one.description.split("\n"):
                assert line in text
    assert "Nobody says this." not in text
    assert to_text(project_of({"title": "", "story_input": {"logline": "x"}})).startswith("UNTITLED\n")


def test_to_json_is_stable_and_round_trips() -> None:
    project = make_project()
    original = copy.deepcopy(project)
    doc = to_document(project)
    assert project == original  # exporters never mutate the project
    assert json.loads(to_json(project)) == doc
    assert to_json(make_project()) == to_json(project)
    assert list(doc) == ["format", "version", "project_path", "title", "story_input", "template", "acts"]
    assert doc["project_path"] == "the-last-heist-3f9a2c"
    assert doc["template"] == {"id": "three-act", "name": "Three-Act Structure"}
    assert [act["key"] for act in doc["acts"]] == ["setup", "confrontation", "resolution"]
    setup = doc["acts"][0]
    assert setup["plot_points"] == ["Maya is offered the job.", "Jonas joins."]
    first = setup["scenes"][0]
    assert first["heading"] == "INT. WAREHOUSE - NIGHT"
    assert first["dialogue_text"] == project.dialogue["setup:0"]
    assert first["dialogue"][1] == {
        "type": "dialogue",
        "character": "JONAS",
        "parenthetical": "(quietly)",
        "line": "Then we go tonight.\n(beat)\nAnd we don't come back.",
    }
    assert first["dialogue"][2] == {"type": "action", "text": "THE LIGHTS DIE."}
    assert doc["acts"][2]["scenes"][0]["dialogue_text"] is None


def test_the_title_page_credits_the_author() -> None:
    """The story's author when it names one (or several), else the writer who owns the project: never an
    empty "Written by"."""
    named = parse_fountain(to_fountain(make_project(), "johndoe")).title_page
    assert named["Credit"] == ["Written by"] and named["Author"] == ["Ada Writer"]
    several = project_of({"story_input": {"title": "T", "author": ["Ada Writer", "Bo Grant"]}})
    assert parse_fountain(to_fountain(several, "johndoe")).title_page["Author"] == ["Ada Writer, Bo Grant"]
    own = parse_fountain(to_fountain(project_of({}), "johndoe")).title_page
    assert own["Credit"] == ["Written by"] and own["Author"] == ["johndoe"]
