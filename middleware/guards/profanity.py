"""``profanity``: the trained model shipped in `alt-profanity-check`, made fast.

The package's model is a TF-IDF vectoriser plus five calibrated linear SVMs.
Calling it through scikit-learn costs about 10 ms per message, mostly
overhead, and importing it about 3 s. So at the first build we load it once
(lazily, cached for the process) and fold it into plain tables: per word its
IDF and the five SVM weights. Scoring a message is then tokenise, count,
normalise and five dot products, in microseconds, and gives the package's own
``predict_prob`` result (a test checks this on the evaluation set).

Obfuscation ("sh1t", "f*ck", "f******", "ｆｕｃｋ", zero-width joiners) is
undone on a second pass whose score counts too: masked letters are resolved
against the model's own most offensive vocabulary and the word list, never
guessed into harmless words.

The model misses bare slurs and rare insults (it scores words by how often they
appeared in abusive comments), so a word list with human severity ratings
(Surge AI's, MIT, ``data/profanity_words.txt``) and hostile emoji (🖕, 🤬) are
a second signal. A third is the shape of an attack on a person: an insult
aimed at "you" ("you are a complete clown", "what a loser": ordinary words the
model may not weigh) rates 2, a listed term aimed at "you" one more than its
rating, and telling someone to kill themselves ("kys", "go hang yourself") 3.
A rating ``r`` (1 mild .. 3 severe) scores ``0.4 + r / 5`` (mild 0.6, strong
0.8, severe 1.0), and the message's score is the highest of the model's and the
ratings'. The default threshold is chosen on the tuned part of the evaluation
data (``benchmarks/guard_data``), where the model alone over-scores short
everyday sentences ("shoot me a message", 0.75).
"""

from __future__ import annotations

import math
import re
import threading
from dataclasses import dataclass
from importlib import resources

from middleware.guards.config import ProfanityGuardConfig
from middleware.guards.guard import GuardContext, verdict
from middleware.guards.normalize import fold_leet, forms, normalize, off_loop_if_long
from middleware.types import Verdict

# scikit-learn's default token_pattern for the package's TfidfVectorizer.
_TOKEN = re.compile(r"(?u)\b\w\w+\b")
# A word with masks ("f*ck"). As "[a-z][a-z*#%]*[*#%][a-z*#%]*" it was quadratic (each split
# of "a**a**…a**1" between two repeats tried); one repeat here, the mask required ahead. A
# match without one (before a "%") resolves to itself: the same results (a test compares).
_MASKED = re.compile(r"(?<![\w*#])[a-z](?=[a-z]*+[*#%])[a-z*#%]*(?![\w*#])")
_REPEATS = re.compile(r"(\w)\1{2,}")
_ROOTS = ("fuck", "shit")
# Dashes or underscores standing for letters ("f---ing", "s__t") are masks like "*".
_DASH_MASK = re.compile(r"(?<=[a-z])[-_]{2,}(?=[a-z]|\b)")


@dataclass(frozen=True, slots=True)
class LinearProfanityModel:
    """The package's model as tables: word -> (idf, weight per classifier)."""

    features: dict[str, tuple[float, tuple[float, ...]]]
    intercepts: tuple[float, ...]
    sigmoid_a: tuple[float, ...]
    sigmoid_b: tuple[float, ...]
    offensive: tuple[str, ...]  # vocabulary with a strongly positive weight, most offensive first
    offensive_by_length: dict[int, tuple[str, ...]]  # the same, by length, for unmasking

    def probability(self, text: str) -> float:
        counts: dict[str, int] = {}  # a plain dict: Counter() costs more than it counts here
        for token in _TOKEN.findall(text.lower()):
            counts[token] = counts.get(token, 0) + 1
        get = self.features.get
        n = len(self.intercepts)
        dots = [0.0] * n
        norm_sq = 0.0
        for word, count in counts.items():
            feature = get(word)
            if feature is None:
                continue
            idf, weights = feature
            value = count * idf
            norm_sq += value * value
            for k in range(n):
                dots[k] += value * weights[k]
        scale = 1.0 / math.sqrt(norm_sq) if norm_sq else 0.0
        total = 0.0
        for k in range(n):
            decision = dots[k] * scale + self.intercepts[k]
            total += 1.0 / (1.0 + math.exp(self.sigmoid_a[k] * decision + self.sigmoid_b[k]))
        return total / n

    def unmask(self, token: str) -> str:
        """ "f*ck" -> the most offensive vocabulary word it can stand for, else unchanged."""
        if sum(c.isalpha() for c in token) < 2:
            return token
        return _stood_for(token, self.offensive_by_length) or token


def by_length(words: tuple[str, ...]) -> dict[int, tuple[str, ...]]:
    """``words`` grouped by length, each group in the original order."""
    return {n: tuple(w for w in words if len(w) == n) for n in {len(w) for w in words}}


def _stood_for(token: str, candidates: dict[int, tuple[str, ...]]) -> str | None:
    """The first candidate of a masked token's length with its letters and a-z at each mask
    (a pattern per token cost more to compile than to match; a long one finds no group)."""
    for word in candidates.get(len(token), ()):
        if all("a" <= w <= "z" if t in "*#%" else t == w for t, w in zip(token, word, strict=True)):
            return word
    return None


_WORD = re.compile(r"[^\W_]+")
# Emoji that insult on their own, as the rating of a word saying the same.
_HOSTILE_EMOJI = {"\U0001f595": 3.0, "\U0001f92c": 2.5, "\U0001f4a9": 1.0, "\U0001f92e": 1.0}
_EMOJI = re.compile("|".join(_HOSTILE_EMOJI))

# Words that insult only when aimed at someone: "you clown", "you are so useless".
_INSULTS = frozenset(
    (  # noqa: SIM905 (fifty words read better as one string)
        "idiot moron imbecile loser clown fool jerk creep pig cow snake rat scum parasite "
        "coward liar hypocrite buffoon cretin halfwit dimwit nitwit dunce numbskull bozo troll "
        "twit psycho lunatic freak weirdo disgrace trash garbage pathetic worthless useless "
        "incompetent stupid dumb ignorant braindead clueless disgusting ugly "
        "\U0001f4a9 \U0001f921 \U0001f437 \U0001f400"
    ).split()
)
# "you", "you are", "u r", "ur", "what a", "hey", "shut up", then up to three fillers.
_AIMED = re.compile(
    r"\b(?:you(?:'re|’re| are| r|re)|ur|u r|what an?|hey|shut up|get lost|(you|u))\b[ ,!.]*"
    r"((?:(?:an?|the|such an?|so|just|really|totally|complete|absolute|utter|utterly|little|"
    r"big|fat|stupid|dumb|fucking|freaking|pathetic|worthless|useless|lying|disgusting|"
    r"filthy|ugly|piece of)[ ,]+){0,3}(?:[^\W_]+|[\U0001f4a9\U0001f921\U0001f437\U0001f400]))"
)
_AIMED_WORD = re.compile(r"[^\W_]+|[\U0001f4a9\U0001f921\U0001f437\U0001f400]")
# After a bare "you" the insult must end the phrase: "you clown!", not "you trash the cache".
_PHRASE_END = re.compile(r"\s*(?:[,.!?;:)]|$)")
# Telling someone to kill themselves; rated as severe as the worst slur.
_SELF_HARM = re.compile(
    r"\b(?:kys|kill (?:your ?self|ur ?self|yo ?self)|(?:go )?(?:hang|neck|shoot) "
    r"(?:your ?self|ur ?self)|go die|die in a fire|jump off a (?:bridge|cliff|roof))\b"
)
# Chat abbreviations the list lacks or rates too mildly for how they are used.
_ABBREVIATIONS = {"stfu": 2.0, "gtfo": 2.0, "kys": 3.0}


def rating_score(rating: float) -> float:
    """A rating (1 mild .. 3 severe) as a score comparable to the model's probability."""
    return min(1.0, 0.4 + rating / 5) if rating > 0 else 0.0


def aimed_rating(folded: str, ratings: dict[str, float]) -> float:
    """The worst insult aimed at a person in already folded text (0.0 if none)."""
    best = 0.0
    for m in _AIMED.finditer(folded):
        if m.group(1) and not _PHRASE_END.match(folded, m.end()):
            continue
        for word in _AIMED_WORD.findall(m.group(2)):  # "you're useless, utterly useless"
            listed = ratings.get(word, 0.0)
            if listed:
                best = max(best, listed + 1.0)
            elif word in _INSULTS:
                best = max(best, 2.0)
    return min(best, 3.0)


# Listed terms that are ordinary words in other senses (a country, a river, a garden
# tool, Homo sapiens, a bar measure): alone they say nothing; the model judges their use.
_AMBIGUOUS = frozenset(
    (  # noqa: SIM905 (as _INSULTS)
        "niger negro homo homos hoe hoes nip jap spook spooks jigger nicker flamer gyp crow "
        "peter sack finger sheet suck bates dolt swine cooties forked greaser hustler sissy "
        "snatch bbc 69 55 sperm rectum breasts anal anus booty crotch spanking bondage boner"
    ).split()
)


@dataclass(frozen=True, slots=True)
class WordList:
    """Rated terms, keyed by their folded words ("ass hole", "bitch"): term -> rating."""

    ratings: dict[str, float]
    # first word of a listed phrase -> most words of a phrase starting with it ("ass" -> 2)
    phrase_words: dict[str, int]
    masked_candidates: tuple[str, ...]  # single words rated >= 2, worst first, for unmasking
    # Derived, so that a message's words are matched with set operations in C instead
    # of a Python lookup per word (most of this guard's time): the rated single words,
    # and each of them with an "s" added (plurals the list lacks).
    single_words: frozenset[str]
    plurals: frozenset[str]
    candidates_by_length: dict[int, tuple[str, ...]]

    @classmethod
    def of(cls, ratings: dict[str, float], masked_candidates: tuple[str, ...]) -> WordList:
        phrase_words: dict[str, int] = {}
        for key in ratings:
            first, *rest = key.split(" ")
            if rest:
                phrase_words[first] = max(phrase_words.get(first, 1), len(rest) + 1)
        singles = frozenset(k for k in ratings if " " not in k)
        plurals = frozenset(k + "s" for k in singles)
        return cls(
            ratings, phrase_words, masked_candidates, singles, plurals, by_length(masked_candidates)
        )

    def worst(self, folded: str) -> float:
        """Highest rating of a listed term among the words of already folded text."""
        words = _WORD.findall(folded)
        ratings = self.ratings
        best = max(map(ratings.__getitem__, self.single_words.intersection(words)), default=0.0)
        for word in self.plurals.intersection(words):
            if len(word) > 4 and word not in ratings:
                best = max(best, ratings[word[:-1]])
        if self.phrase_words.keys().isdisjoint(words):
            return best
        for i, word in enumerate(words):  # phrases only from a word that starts one
            most = self.phrase_words.get(word, 1)
            for end in range(i + 2, min(i + most, len(words)) + 1):
                rating = ratings.get(" ".join(words[i:end]))
                if rating is not None and rating > best:
                    best = rating
        return best


def _load_words() -> WordList:
    ratings: dict[str, float] = {}
    text = (
        resources.files("middleware.guards")
        .joinpath("data/profanity_words.txt")
        .read_text(encoding="utf-8")
    )
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        term, rating, _category = line.split("\t")
        key = " ".join(_WORD.findall(fold_leet(normalize(term))))
        if key and key not in _AMBIGUOUS and float(rating) > ratings.get(key, 0.0):
            ratings[key] = float(rating)
    for key, abbreviated in _ABBREVIATIONS.items():
        ratings[key] = max(ratings.get(key, 0.0), abbreviated)
    singles = sorted((w for w, r in ratings.items() if r >= 2 and " " not in w and w.isalpha()),
                     key=lambda w: -ratings[w])  # fmt: skip
    return WordList.of(ratings, tuple(singles))


_model: LinearProfanityModel | None = None
_words: WordList | None = None
_lock = threading.Lock()


def load_model() -> LinearProfanityModel:
    """Load the package's model once per process (slow: imports scikit-learn)."""
    global _model
    with _lock:
        if _model is None:
            _model = _extract()
    return _model


def load_words() -> WordList:
    """The rated word list, read once per process."""
    global _words
    with _lock:
        if _words is None:
            _words = _load_words()
    return _words


def _extract() -> LinearProfanityModel:
    from profanity_check import profanity_check as package  # slow import, on purpose here

    vectorizer, model = package.vectorizer, package.model
    calibrated = model.calibrated_classifiers_
    coefs = [c.estimator.coef_[0] for c in calibrated]
    idf = vectorizer.idf_
    features = {
        word: (float(idf[i]), tuple(float(coef[i]) for coef in coefs))
        for word, i in vectorizer.vocabulary_.items()
    }
    mean_weight = {w: sum(ws) / len(ws) for w, (_, ws) in features.items()}
    offensive = tuple(
        sorted(
            (w for w, m in mean_weight.items() if m > 2.0 and w.isalpha()),
            key=lambda w: -mean_weight[w],
        )
    )
    return LinearProfanityModel(
        features=features,
        intercepts=tuple(float(c.estimator.intercept_[0]) for c in calibrated),
        sigmoid_a=tuple(float(c.calibrators[0].a_) for c in calibrated),
        sigmoid_b=tuple(float(c.calibrators[0].b_) for c in calibrated),
        offensive=offensive,
        offensive_by_length=by_length(offensive),
    )


def _unmask(token: str, model: LinearProfanityModel, words: WordList) -> str:
    found = model.unmask(token)
    if found != token or sum(c.isalpha() for c in token) < 1 or len(token) < 3:
        return found
    # The first letter kept and the rest masked ("f******", "s**t"): the list's worst word
    # of that shape, never a guess into a harmless word.
    return _stood_for(token, words.candidates_by_length) or token


def deobfuscate(text: str, model: LinearProfanityModel, words: WordList | None = None) -> str:
    """Text with leetspeak, look-alikes, masks ("f*ck") and stretched letters undone."""
    folded = forms(text)[1]
    if "--" in folded or "__" in folded:
        folded = _DASH_MASK.sub(lambda m: "*" * len(m.group(0)), folded)
    if "*" in folded or "#" in folded or "%" in folded:
        wl = words or load_words()
        folded = _MASKED.sub(lambda m: _unmask(m.group(0), model, wl), folded)
    if not (_REPEATS.search(folded) or any(root in folded for root in _ROOTS)):
        return folded  # the common case: no stretched letters, no compounds to split

    def known(m: re.Match[str]) -> str:
        word = m.group(0)
        if word in model.features:
            return word
        # "fuuuuck" -> "fuck", "shiiit" -> "shit": keep the form the model knows.
        if _REPEATS.search(word):
            for squeezed in (_REPEATS.sub(r"\1", word), _REPEATS.sub(r"\1\1", word)):
                if squeezed in model.features:
                    return squeezed
        # Compounds the vocabulary lacks ("horseshit", "fuckwit"). Only these two roots:
        # shorter ones ("ass", "cock") hide inside innocent words (class, cocktail).
        roots = [root for root in _ROOTS if root in word]
        return " ".join([word, *roots]) if roots else word

    return _TOKEN.sub(known, folded)


class ProfanityGuard:
    local = True  # CPU-only and fast: run inline, no task
    offline = False

    def __init__(self, cfg: ProfanityGuardConfig) -> None:
        self.name = cfg.name
        self.threshold = cfg.threshold
        self.deobfuscate = cfg.deobfuscate
        self.model = load_model()
        self.words = load_words()
        allowed = sorted({w.strip().lower() for w in cfg.allow_words if w.strip()}, key=len)
        self._allowed = (
            re.compile(r"\b(?:" + "|".join(re.escape(w) for w in reversed(allowed)) + r")\b", re.I)
            if allowed
            else None
        )
        # For ASCII words in ASCII text the pattern can only match where a word is a
        # substring of the lower-cased text; a few substring tests are cheaper than it.
        self._allowed_ascii = tuple(allowed) if all(w.isascii() for w in allowed) else None

    def score(self, text: str) -> float:
        # Before allow_words: "kill" may be an everyday word, "kill yourself" is not.
        if _SELF_HARM.search(forms(text)[1]):
            return 1.0
        text = self._without_allowed(text)
        score = self.model.probability(text)
        if score >= self.threshold:
            return score
        rating = self._emoji_rating(text)
        plain = text.lower()
        if self.deobfuscate:
            plain = self._without_allowed(deobfuscate(text, self.model, self.words))
            if plain != text.lower():
                score = max(score, self.model.probability(plain))
        aimed = aimed_rating(plain, self.words.ratings)
        rating = max(rating, self.words.worst(plain), aimed)
        return max(score, rating_score(min(rating, 3.0)))

    def _without_allowed(self, text: str) -> str:
        if self._allowed is None:
            return text
        if self._allowed_ascii is not None and text.isascii():
            lowered = text.lower()
            for word in self._allowed_ascii:
                if word in lowered:
                    break
            else:
                return text
        return self._allowed.sub(" ", text)

    @staticmethod
    def _emoji_rating(text: str) -> float:
        if text.isascii():
            return 0.0
        found = [_HOSTILE_EMOJI[e] for e in _EMOJI.findall(text)]
        # each further hostile emoji adds to the worst one: "💩💩💩" says more than "💩"
        return max(found) + 0.5 * (len(found) - 1) if found else 0.0

    async def check(self, text: str, context: GuardContext) -> Verdict:
        score = await off_loop_if_long(self.score, text)
        unsafe = score >= self.threshold
        return verdict(
            self.name,
            context,
            unsafe=unsafe,
            category="profanity" if unsafe else "",
            score=round(score, 4),
            reason=f"profanity probability {score:.2f} (threshold {self.threshold:g})",
        )
