"""Labelled phrases in English and Brazilian Portuguese: what the detector must and must not flag.

Positives assert severity and category; negatives assert no detection at all. Every example
named in the detector's brief is here, plus slang, typos, missing accents and figurative uses.
"""

from __future__ import annotations

import pytest

from studyplatform.safety.detector import detect

# (text, language passed to detect, expected severity, expected category)
POSITIVES: list[tuple[str, str | None, str, str]] = [
    # English: explicit intent, plan or means -> high
    ("I want to kill myself", "en", "high", "suicidal_intent"),
    ("i wanna kill myself tonight", "en", "high", "suicidal_intent"),
    ("I'm going to end it all", "en", "high", "suicidal_intent"),
    ("im gonna end it all", None, "high", "suicidal_intent"),
    ("I think I should just kill myself", "en", "high", "suicidal_intent"),
    ("kms", "en", "high", "suicidal_intent"),
    ("ugh i want to kms", "en", "high", "suicidal_intent"),
    ("I'm going to unalive myself", "en", "high", "suicidal_intent"),
    ("I want to end my life", "en", "high", "suicidal_intent"),
    ("I'm going to commit suicide", "en", "high", "suicidal_intent"),
    ("This is my last message, goodbye forever", "en", "high", "suicidal_intent"),
    ("I won't be around much longer", "en", "high", "suicidal_intent"),
    ("I'm suicidal", "en", "high", "suicidal_ideation"),
    ("honestly feeling suicidal again", "en", "high", "suicidal_ideation"),
    ("I've been thinking about suicide a lot", "en", "high", "suicidal_ideation"),
    ("thinking about suicide", "en", "high", "suicidal_ideation"),
    ("I keep thinking about killing myself", "en", "high", "suicidal_ideation"),
    ("I'm having suicidal thoughts", "en", "high", "suicidal_ideation"),
    ("Thinking about sewerslide again", "en", "high", "suicidal_ideation"),
    ("how do I kill myself without pain", "en", "high", "plan_or_means"),
    ("I'm going to overdose on my pills", "en", "high", "plan_or_means"),
    ("overdose on my pills", "en", "high", "plan_or_means"),
    ("I'm going to take all of my pills tonight", "en", "high", "plan_or_means"),
    ("I bought a rope to hang myself", "en", "high", "plan_or_means"),
    ("I'm going to jump off the bridge", "en", "high", "plan_or_means"),
    ("I wrote a suicide note", "en", "high", "plan_or_means"),
    ("I have a plan to kill myself", "en", "high", "plan_or_means"),
    ("I cut myself again last night", "en", "high", "self_harm"),
    ("I want to cut myself", "en", "high", "self_harm"),
    ("I've been self-harming", "en", "high", "self_harm"),
    ("I have the urge to hurt myself", "en", "high", "self_harm"),
    ("I tried to kill myself last night", "en", "high", "past_attempt"),
    # English: passive ideation -> medium
    ("I don't want to live anymore", "en", "medium", "passive_ideation"),
    ("I dont want to live", "en", "medium", "passive_ideation"),
    ("I do not want to be alive", "en", "medium", "passive_ideation"),
    ("i dont wanna wake up tomorrow", "en", "medium", "passive_ideation"),
    ("I wish I wasn't here", "en", "medium", "passive_ideation"),
    ("I wish I had never been born", "en", "medium", "passive_ideation"),
    ("I want to die", "en", "medium", "passive_ideation"),
    ("I don't know why but I just want to die", "en", "medium", "passive_ideation"),
    ("I don't know why I want to die", "en", "medium", "passive_ideation"),
    ("not gonna lie, I want to die", "en", "medium", "passive_ideation"),
    ("I wish I was dead", "en", "medium", "passive_ideation"),
    ("there's no reason to live", "en", "medium", "passive_ideation"),
    ("I have nothing to live for", "en", "medium", "passive_ideation"),
    ("I'd be better off dead", "en", "medium", "passive_ideation"),
    ("everyone would be better off without me", "en", "medium", "passive_ideation"),
    ("nobody would care if I died", "en", "medium", "passive_ideation"),
    ("what's the point of living", "en", "medium", "passive_ideation"),
    ("I can't go on living like this", "en", "medium", "passive_ideation"),
    ("I tried to kill myself two years ago", "en", "medium", "past_attempt"),
    ("Honestly I just want to sleep and never wake up", "en", "medium", "passive_ideation"),
    ("I'm not sure I want to live anymore", "en", "medium", "passive_ideation"),
    ("I'm done with life", "en", "medium", "passive_ideation"),
    ("My mom doesn't know I want to die", "en", "medium", "passive_ideation"),
    ("eu tava pensando em me matar", "pt-br", "high", "suicidal_ideation"),
    ("minha amiga disse que quer morrer", "pt-br", "low", "third_party"),
    # English: vague or resolved -> low
    ("I can't go on", "en", "low", "hopelessness"),
    ("I can't do this anymore.", "en", "low", "hopelessness"),
    ("I feel hopeless", "en", "low", "hopelessness"),
    ("I used to think about suicide years ago but I'm fine now", "en", "low", "history"),
    ("I used to cut myself in high school", "en", "low", "history"),
    ("suicide", "en", "low", "suicide_mention"),
    ("my friend said she wants to kill herself", "en", "low", "third_party"),
    # Portuguese: explicit intent, plan or means -> high
    ("quero me matar", "pt-br", "high", "suicidal_intent"),
    ("vou me matar", "pt-br", "high", "suicidal_intent"),
    ("Eu vou me matar hoje", None, "high", "suicidal_intent"),
    ("to com vontade de me matar", "pt-br", "high", "suicidal_intent"),
    ("queria me suicidar", "pt-br", "high", "suicidal_intent"),
    ("quero acabar com tudo", "pt-br", "high", "suicidal_intent"),
    ("quero tirar minha própria vida", "pt-br", "high", "suicidal_intent"),
    ("essa é minha última mensagem", "pt-br", "high", "suicidal_intent"),
    ("pensando em suicídio", "pt-br", "high", "suicidal_ideation"),
    ("pensando em suicidio", "pt-br", "high", "suicidal_ideation"),
    ("tô pensando em suicídio de novo", None, "high", "suicidal_ideation"),
    ("tenho pensamentos suicidas", "pt-br", "high", "suicidal_ideation"),
    ("tô me sentindo suicida", "pt-br", "high", "suicidal_ideation"),
    ("vou tomar todos os remédios", "pt-br", "high", "plan_or_means"),
    ("tomar todos os remédios", "pt-br", "high", "plan_or_means"),
    ("vou tomar a cartela inteira de rivotril", "pt-br", "high", "plan_or_means"),
    ("como me matar sem dor", "pt-br", "high", "plan_or_means"),
    ("quero pular da ponte", "pt-br", "high", "plan_or_means"),
    ("comprei uma corda pra me enforcar", "pt-br", "high", "plan_or_means"),
    ("me cortar", "pt-br", "high", "self_harm"),
    ("quero me cortar", "pt-br", "high", "self_harm"),
    ("ontem me cortei de novo", "pt-br", "high", "self_harm"),
    ("quero me machucar", "pt-br", "high", "self_harm"),
    ("voltei pra automutilação", "pt-br", "high", "self_harm"),
    ("tentei me matar ontem", "pt-br", "high", "past_attempt"),
    # Portuguese: passive ideation -> medium
    ("não quero mais viver", "pt-br", "medium", "passive_ideation"),
    ("nao quero mais viver", "pt-br", "medium", "passive_ideation"),
    ("n quero viver mais", "pt-br", "medium", "passive_ideation"),
    ("não aguento mais viver", "pt-br", "medium", "passive_ideation"),
    ("queria sumir", "pt-br", "medium", "passive_ideation"),
    ("quero sumir pra sempre", "pt-br", "medium", "passive_ideation"),
    ("quero sumir para sempre", None, "medium", "passive_ideation"),
    ("queria morrer", "pt-br", "medium", "passive_ideation"),
    ("eu só quero morrer", "pt-br", "medium", "passive_ideation"),
    ("queria dormir e não acordar mais", "pt-br", "medium", "passive_ideation"),
    ("queria não ter nascido", "pt-br", "medium", "passive_ideation"),
    ("seria melhor se eu morresse", "pt-br", "medium", "passive_ideation"),
    ("todo mundo ficaria melhor sem mim", "pt-br", "medium", "passive_ideation"),
    ("não tenho motivo pra viver", "pt-br", "medium", "passive_ideation"),
    ("ninguém sentiria minha falta", "pt-br", "medium", "passive_ideation"),
    ("cansei de viver", "pt-br", "medium", "passive_ideation"),
    ("não sei por que quero morrer", "pt-br", "medium", "passive_ideation"),
    ("eu não tô bem e quero morrer", "pt-br", "medium", "passive_ideation"),
    ("já tentei me matar", "pt-br", "medium", "past_attempt"),
    # Portuguese: vague, resolved or about someone else -> low
    ("não aguento mais", "pt-br", "low", "hopelessness"),
    ("Não aguento mais!", "pt-br", "low", "hopelessness"),
    ("acabar com tudo", "pt-br", "low", "suicidal_intent"),
    ("minha vida não tem sentido", "pt-br", "low", "hopelessness"),
    ("já pensei em suicídio quando era adolescente, hoje tô bem", "pt-br", "low", "history"),
    ("suicidio", None, "low", "suicide_mention"),
    ("meu amigo falou que quer se matar", "pt-br", "low", "third_party"),
]

# (text, language passed to detect)
NEGATIVES: list[tuple[str, str | None]] = [
    # English: negated
    ("I would never hurt myself", "en"),
    ("I'm not suicidal", "en"),
    ("I am not suicidal, just tired", "en"),
    ("I don't want to kill myself", "en"),
    ("I don't want to die", "en"),
    ("i dont wanna die", "en"),
    ("I'm not going to kill myself", "en"),
    ("I won't kill myself, I promise", "en"),
    ("I would never commit suicide", "en"),
    ("I'm not thinking about suicide", "en"),
    ("no way I'd ever kill myself", "en"),
    # English: third person, reported, informational, fiction
    ("my character wants to kill himself in my novel", "en"),
    ("what are the warning signs of suicide?", "en"),
    ("the movie is about suicide", "en"),
    ("how do I help a friend who is suicidal", "en"),
    ("suicide prevention week starts Monday", "en"),
    ("Suicide Squad was a fun movie", "en"),
    ("The book's hero is thinking about suicide in chapter two", "en"),
    ("she wrote a suicide note in the film", "en"),
    ("an article said many people feel suicidal at some point", "en"),
    # English: figurative and unrelated
    ("this homework is killing me", "en"),
    ("I could kill for a coffee", "en"),
    ("I'm dying of laughter", "en"),
    ("kill the process", "en"),
    ("dead tired after work", "en"),
    ("I could kill myself for forgetting her birthday", "en"),
    ("I'm killing myself at the gym lately", "en"),
    ("I want to die of embarrassment", "en"),
    ("I would die for a pizza right now", "en"),
    ("I accidentally cut myself while cooking", "en"),
    ("I cut myself shaving", "en"),
    ("I cut myself a slice of cake", "en"),
    ("I ran 5 kms today", "en"),
    ("we are 10 kms away", "en"),
    ("I take all my meds in the morning", "en"),
    ("I can't go on the trip next week", "en"),
    ("I want to live a long life", "en"),
    ("I love my life", "en"),
    ("my phone battery died", "en"),
    ("The deadline is killing me", "en"),
    # Portuguese: negated
    ("eu nunca me mataria", "pt-br"),
    ("não estou pensando em suicídio", "pt-br"),
    ("não quero me matar", "pt-br"),
    ("nao quero morrer", "pt-br"),
    ("jamais vou me matar", "pt-br"),
    ("nunca pensei em suicídio", "pt-br"),
    ("não vou me cortar", "pt-br"),
    ("não sou suicida", "pt-br"),
    # Portuguese: third person, informational, fiction
    ("o filme é sobre suicídio", "pt-br"),
    ("quais são os sinais de alerta de suicídio?", "pt-br"),
    ("o personagem quer se matar no livro", "pt-br"),
    ("setembro amarelo é a campanha de prevenção ao suicídio", "pt-br"),
    ("como ajudar um amigo suicida", "pt-br"),
    # Portuguese: figurative and unrelated
    ("morrendo de rir", "pt-br"),
    ("to morta de cansaço", "pt-br"),
    ("tô morrendo de fome", "pt-br"),
    ("quero morrer de rir com esse vídeo", "pt-br"),
    ("minha mãe vai me matar se eu chegar tarde", "pt-br"),
    ("isso vai me matar de vergonha", "pt-br"),
    ("vou me matar de estudar pra essa prova", "pt-br"),
    ("me matando de trabalhar", "pt-br"),
    ("me cortei sem querer cozinhando", "pt-br"),
    ("não aguento mais essa chuva", "pt-br"),
    ("tomei todos os remédios hoje direitinho", "pt-br"),
    ("vou tomar remédio pra dor de cabeça", "pt-br"),
    ("quero viver muito", "pt-br"),
    ("acabei com tudo no jogo ontem", "pt-br"),
    ("vc viu o jogo?", "pt-br"),
    ("pra mim tá ótimo", None),
    ("estou feliz hoje", None),
    ("I don't even want to die", "en"),
    ("She wants to die", "en"),
    ("I hurt myself playing football", "en"),
    ("meu pai vai me matar", "pt-br"),
    ("não quero que você se mate", "pt-br"),
]


@pytest.mark.parametrize(("text", "language", "severity", "category"), POSITIVES)
def test_it_flags_crisis_language(text, language, severity, category):
    # given: a message a safety reviewer would want to see
    # when: it is screened
    found = detect(text, language)
    # then: it is flagged with the expected severity and category
    assert found is not None, f"missed: {text!r}"
    assert (found.severity, found.category) == (severity, category), found


@pytest.mark.parametrize(("text", "language"), NEGATIVES)
def test_it_does_not_flag_negated_figurative_or_third_party_talk(text, language):
    # given: a negated, figurative, fictional or informational message
    # when: it is screened
    found = detect(text, language)
    # then: nothing is flagged
    assert found is None, found


def test_the_table_is_large_enough_in_both_languages():
    # given: the labelled table  / then: at least 60 each way, and both languages represented
    assert len(POSITIVES) >= 60
    assert len(NEGATIVES) >= 60
    en_pos = [p for p in POSITIVES if p[1] == "en"]
    pt_pos = [p for p in POSITIVES if p[1] == "pt-br"]
    assert len(en_pos) >= 30
    assert len(pt_pos) >= 30
    assert len({t for t, *_ in POSITIVES}) == len(POSITIVES)
    assert len({t for t, _ in NEGATIVES}) == len(NEGATIVES)


@pytest.mark.parametrize(("text", "language", "severity", "category"), POSITIVES)
def test_positives_are_found_without_a_language_hint(text, language, severity, category):
    # given: a positive phrase  / when: screened with language=None (both lexicons)
    found = detect(text)
    # then: it is still flagged at the same severity
    assert found is not None
    assert found.severity == severity
