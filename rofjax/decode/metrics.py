"""Extraction metrics, pure Python.

* `duee_official_f1`: the DuEE 1.0 leaderboard metric (PaddleNLP DuEE README): each predicted argument scores
  [event type right] × [role right] × character-level F1 against the best-matching gold argument of that type and
  role (its text or any alias, case-insensitive); P = Σ scores / #predicted, R = Σ scores / #gold. Arguments are
  counted once per sentence (duplicates collapse); a gold argument may serve several predictions, as in the
  official description (no one-to-one assignment).
* `cmrc2018_scores`: CMRC 2018 EM and F1 as its official script computes them.
* `gplinker_event_scores`: the authors' dev metrics — events equal as whole sets of (type, role, text, start),
  and arguments (triggers excluded) as tuples.
"""

from __future__ import annotations

import collections
import re
from collections.abc import Iterable, Mapping, Sequence


def char_f1(predicted: str, gold: str) -> float:
    """F1 of the character multisets of two strings, case-insensitive."""
    predicted, gold = predicted.lower(), gold.lower()
    if not predicted or not gold:
        return 0.0
    common = sum((collections.Counter(predicted) & collections.Counter(gold)).values())
    if not common:
        return 0.0
    precision, recall = common / len(predicted), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def _arguments(events: Iterable[Mapping], with_alias: bool):
    out = {}
    for event in events:
        for argument in event.get("arguments", []):
            key = (event["event_type"], argument["role"], argument["argument"])
            forms = [argument["argument"]] + (list(argument.get("alias", []) or []) if with_alias else [])
            out.setdefault(key, set()).update(forms)
    return out


def duee_official_f1(predictions: Mapping[str, Sequence[Mapping]], gold: Mapping[str, Sequence[Mapping]]) -> dict:
    """`{id: event_list}` for both sides (DuEE JSON `event_list` entries, `arguments` with role/argument/alias)."""
    score = 0.0
    n_pred = n_gold = 0
    for sentence_id, gold_events in gold.items():
        gold_args = _arguments(gold_events, with_alias=True)
        pred_args = _arguments(predictions.get(sentence_id, []), with_alias=False)
        n_gold += len(gold_args)
        n_pred += len(pred_args)
        for event_type, role, text in pred_args:
            best = 0.0
            for (g_type, g_role, _), forms in gold_args.items():
                if g_type == event_type and g_role == role:
                    best = max(best, max(char_f1(text, form) for form in forms))
            score += best
    extra = set(predictions) - set(gold)
    n_pred += sum(len(_arguments(predictions[i], with_alias=False)) for i in extra)
    precision = score / n_pred if n_pred else 0.0
    recall = score / n_gold if n_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def gplinker_event_scores(predicted: Sequence[Iterable], gold: Sequence[Iterable],
                          trigger_role: str = "触发词") -> dict:
    """Event- and argument-level P/R/F1 as the GPLinker scripts compute them on dev.

    Each element of `predicted`/`gold` is one sentence's events; an event is an iterable of
    `(event_type, role, text, start)`. Predicted events without a trigger are ignored at event level.
    """
    e_correct = e_pred = e_gold = a_correct = a_pred = a_gold = 0
    for pred_events, gold_events in zip(predicted, gold, strict=True):
        pred_events = [tuple(sorted(set(e))) for e in pred_events]
        gold_events = [tuple(sorted(set(e))) for e in gold_events]
        pred_set = {e for e in pred_events if any(a[1] == trigger_role for a in e)}
        gold_set = set(gold_events)
        e_correct += len(pred_set & gold_set)
        e_pred += len(pred_set)
        e_gold += len(gold_set)
        pred_args = {a for e in pred_events for a in e if a[1] != trigger_role}
        gold_args = {a for e in gold_events for a in e if a[1] != trigger_role}
        a_correct += len(pred_args & gold_args)
        a_pred += len(pred_args)
        a_gold += len(gold_args)

    def prf(correct, n_pred, n_gold):
        return {"precision": correct / n_pred if n_pred else 0.0, "recall": correct / n_gold if n_gold else 0.0,
                "f1": 2 * correct / (n_pred + n_gold) if n_pred + n_gold else 0.0}

    return {"event": prf(e_correct, e_pred, e_gold), "argument": prf(a_correct, a_pred, a_gold)}


# CMRC 2018 (the official evaluation script, v5) --------------------------------------------------------------------

CMRC_PUNCTUATION = frozenset(['-', ':', '_', '*', '^', '/', '\\', '~', '`', '+', '=', '，', '。', '：', '？', '！', '“',
                              '”', '；', '’', '《', '》', '……', '·', '、', '「', '」', '（', '）', '－', '～', '『', '』'])
_CJK = re.compile(r"[\u4e00-\u9fa5]")
# The official script splits non-Chinese runs with nltk's Treebank `word_tokenize`; this keeps its effect on what
# CMRC answers hold (words and numbers, decimals like 3.5 whole, other symbols alone) without nltk and its data.
_WORD = re.compile(r"\w+(?:[.,']\w+)*|[^\w\s]")


def cmrc_segments(text: str, remove_punctuation: bool = False) -> list[str]:
    """The official `mixed_segmentation`: lower-cased; each Chinese character and listed punctuation mark is a
    segment, other runs are split into words."""
    segments, run = [], ""
    for char in str(text).lower().strip():
        if remove_punctuation and char in CMRC_PUNCTUATION:
            continue
        if _CJK.match(char) or char in CMRC_PUNCTUATION:
            if run:
                segments.extend(_WORD.findall(run))
                run = ""
            segments.append(char)
        else:
            run += char
    if run:
        segments.extend(_WORD.findall(run))
    return segments


def cmrc_strip(text: str) -> str:
    """The official `remove_punctuation`: lower-cased, stripped, listed punctuation removed."""
    return "".join(c for c in str(text).lower().strip() if c not in CMRC_PUNCTUATION)


def _longest_common_run(a: Sequence[str], b: Sequence[str]) -> int:
    best, previous = 0, [0] * (len(b) + 1)
    for x in a:
        current = [0] * (len(b) + 1)
        for j, y in enumerate(b):
            if x == y:
                current[j + 1] = previous[j] + 1
                best = max(best, current[j + 1])
        previous = current
    return best


def cmrc_f1(answers: Sequence[str], prediction: str) -> float:
    """Best over the gold answers of the F1 of the longest common run of segments (punctuation removed)."""
    scores = []
    predicted = cmrc_segments(prediction, remove_punctuation=True)
    for answer in answers:
        gold = cmrc_segments(answer, remove_punctuation=True)
        common = _longest_common_run(gold, predicted)
        if common == 0:
            scores.append(0.0)
            continue
        precision, recall = common / len(predicted), common / len(gold)
        scores.append(2 * precision * recall / (precision + recall))
    return max(scores) if scores else 0.0


def cmrc_em(answers: Sequence[str], prediction: str) -> float:
    return float(any(cmrc_strip(a) == cmrc_strip(prediction) for a in answers))


def cmrc2018_scores(predictions: Mapping[str, str], gold: Mapping[str, Sequence[str]]) -> dict:
    """`{"em", "f1"}` in percent over every gold question (a question without a prediction scores 0), and
    `missing`, the number of such questions — the official script's report."""
    em = f1 = 0.0
    missing = 0
    for qid, answers in gold.items():
        if qid not in predictions:
            missing += 1
            continue
        em += cmrc_em(answers, predictions[qid])
        f1 += cmrc_f1(answers, predictions[qid])
    total = max(len(gold), 1)
    return {"em": 100.0 * em / total, "f1": 100.0 * f1 / total, "questions": len(gold), "missing": missing}


def cluener_official_f1(predicted: list[dict[str, set[str]]], gold: list[dict[str, set[str]]],
                        types: Sequence[str]) -> dict[str, float]:
    """CLUENER's `score.py`: per type, TP/FP/FN over the sets of entity strings of each sentence; macro F1."""
    types = list(types)
    per_type = {}
    for kind in types:
        tp = fp = fn = 0
        for p, g in zip(predicted, gold, strict=True):
            ps, gs = set(p.get(kind, ())), set(g.get(kind, ()))
            tp += len(ps & gs)
            fp += len(ps - gs)
            fn += len(gs - ps)
        per_type[kind] = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
    return {"macro_f1": sum(per_type.values()) / len(types), **{f"f1/{k}": v for k, v in per_type.items()}}
