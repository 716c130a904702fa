"""Which sentences of a turn become memories (the rules, no model)."""

from workers.embed.extract import candidates


def found(user_text: str, reply_text: str = "") -> list[tuple[str, str]]:
    return [(c.kind, c.text) for c in candidates(user_text=user_text, reply_text=reply_text, character_name="Nova")]


def test_facts_and_preferences_the_user_states_about_themselves():
    assert found("Hi! My name is Ana. I live in Lisbon with my dog Rex. I really love jazz music.") == [
        ("fact", "The user said: My name is Ana."),
        ("fact", "The user said: I live in Lisbon with my dog Rex."),
        ("preference", "The user said: I really love jazz music."),
    ]


def test_questions_small_talk_and_fragments_are_not_remembered():
    assert found("Do you like jazz? I'm fine, thanks. Yes. What is a quasar? Tell me about Mars.") == []


def test_promises_the_character_makes():
    assert found("Remind me of my exam.", "I promise I will remind you about the exam on Friday. Good luck!") == [
        ("promise", "Nova promised: I promise I will remind you about the exam on Friday.")
    ]


def test_a_name_makes_a_sentence_a_fact_even_with_a_preference_in_it():
    assert found("My name is Ana and I really love jazz.") == [
        ("fact", "The user said: My name is Ana and I really love jazz.")
    ]


def test_names_matter_more_than_other_facts():
    (name,) = candidates(user_text="Please call me Captain Jo.", reply_text="", character_name="Nova")
    (job,) = candidates(user_text="I work at a bakery downtown.", reply_text="", character_name="Nova")
    assert name.importance > job.importance
