#!/usr/bin/env python3
"""Trains the prompt-injection model (src/core/guard/injection_model.bin).

    pip install pyyaml numpy scipy scikit-learn
    python3 eval/injection/build_corpus.py     # data/{train,valid,heldout}.jsonl
    python3 eval/injection/train.py            # weights, THRESHOLD, REPORT.md

Not part of `make test`. Features come from the Rust featuriser itself
(`cargo run --release --example injection_model -- features BITS`), so
training and inference cannot drift; scores for choosing the model and the
threshold come from the Rust scorer with the quantised weights.

Hyper-parameters (regularisation C, window) are chosen on the validation
split, and so is the threshold: the lowest score that keeps benign false
positives on validation at or under FP_TARGET. The held-out split is only
scored once, at the end, for REPORT.md. Fixed seeds throughout.
"""

import json
import os
import random
import re
import struct
import subprocess
import sys
import time
from collections import Counter, defaultdict

import numpy as np
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DATA = os.path.join(HERE, "data")
MODEL = os.path.join(ROOT, "src/core/guard/injection_model.bin")
RUST = os.path.join(ROOT, "src/core/guard/injection_model.rs")
EXAMPLE = os.path.join(ROOT, "target/release/examples/injection_model")
BITS = int(os.environ.get("BITS", "18"))
FP_TARGET = 0.004
SEED = 20261201
IN_SCOPE = {"en", "fr", "de", "es", "pt", "zh", "ru", "ja"}
CATEGORIES = ["in_the_wild", "role_play", "jailbreak_template", "system_prompt_extraction", "instruction_override",
              "indirect", "multilingual", "obfuscated", "other_language"]


def load(split):
    with open(os.path.join(DATA, f"{split}.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def run(mode, rows, *args):
    data = "".join(json.dumps({"text": r["text"]}, ensure_ascii=False) + "\n" for r in rows)
    out = subprocess.run([EXAMPLE, mode, *map(str, args)], input=data.encode(), capture_output=True, check=True)
    return out.stdout.decode().splitlines()


MIN_WORDS = int(re.search(r"pub const MIN_WORDS: usize = (\d+);", open(RUST, encoding="utf-8").read()).group(1))
NREF = 300.0  # feature values are scaled to the size of a ~100-character text


def featurise(rows, alpha):
    lines = run("features", rows, BITS)
    indptr, indices, values = [0], [], []
    for line in lines:
        ids = np.array([int(x) for x in line.split()], dtype=np.int64)
        if len(ids):
            uniq, counts = np.unique(ids, return_counts=True)
            indices.extend(uniq.tolist())
            values.extend((counts / len(ids) ** alpha * NREF ** (alpha - 0.5)).tolist())
        indptr.append(len(indices))
    return sp.csr_matrix((values, indices, indptr), shape=(len(rows), 1 << BITS), dtype=np.float64)


def windows(rows, width, rng):
    """Texts longer than the scorer's window become windows of that length
    (the first and up to three at random): the scorer scores a long text by
    its windows, so the model learns on the same lengths. A document with a
    planted injection (`span`) gives windows holding the injection
    (injections) and windows away from it (benign)."""
    out = []
    for r in rows:
        text = r["text"]
        if not width or len(text) <= width:
            out.append(r)
            continue
        span = r.get("span")
        if span:
            a, b = span
            for _ in range(2):
                lo, hi = max(0, b - width), min(a, len(text) - width)
                start = rng.randint(lo, max(lo, hi))
                out.append(dict(r, text=text[start:start + width]))
            for _ in range(2):
                start = rng.randrange(len(text) - width)
                if start + width < a or start > b:
                    out.append(dict(r, text=text[start:start + width], label=0))
            continue
        starts = {0} | {rng.randrange(len(text) - width) for _ in range(min(3, len(text) // width))}
        for start in sorted(starts):
            out.append(dict(r, text=text[start:start + width]))
    return out


def write_model(path, w, b, window, alpha):
    scale = float(np.max(np.abs(w))) / 127.0 or 1.0
    q = np.clip(np.round(w / scale), -127, 127).astype(np.int8)
    with open(path, "wb") as f:
        f.write(b"TGIJ" + bytes([2, BITS])
                + struct.pack("<Hfff", window, scale * NREF ** (alpha - 0.5), float(b), alpha) + q.tobytes())
    return q


def scores(rows, model_path):
    return np.array([float(line.split("\t")[0]) for line in run("score", rows, model_path)])


def rule_scores(rows, model_path):
    return np.array([float(line.split("\t")[1]) for line in run("score", rows, model_path)])


def threshold_for(benign_scores, fp_target):
    """The lowest threshold whose false-positive rate is <= fp_target."""
    s = np.sort(benign_scores)[::-1]
    allowed = int(np.floor(fp_target * len(s)))
    t = s[allowed] if allowed < len(s) else 0.0
    return float(np.nextafter(np.float32(t), np.float32(2.0)))


def main():
    t0 = time.time()
    subprocess.run(["cargo", "build", "--release", "--example", "injection_model"], cwd=ROOT, check=True)
    rng = random.Random(SEED)
    train, valid, heldout = load("train"), load("valid"), load("heldout")
    y_valid = np.array([r["label"] for r in valid])
    best = None
    tmp = os.path.join(HERE, ".cache", "candidate.bin")
    os.makedirs(os.path.dirname(tmp), exist_ok=True)
    results = []
    for window, alpha in [(256, 0.5), (256, 0.75), (256, 1.0), (512, 0.75), (512, 1.0)]:
        rows = windows(train, window, random.Random(SEED))
        X = featurise(rows, alpha)
        y = np.array([r["label"] for r in rows])
        weight = np.array([3.0 if r["category"] in ("hard_negative", "benign_role_play", "security_discussion") else 1.0
                           for r in rows])
        for C in [8.0, 32.0]:
            clf = LogisticRegression(C=C, class_weight="balanced", max_iter=3000, solver="liblinear", random_state=SEED)
            clf.fit(X, y, sample_weight=weight)
            write_model(tmp, clf.coef_[0], clf.intercept_[0], window, alpha)
            s = scores(valid, tmp)
            t = threshold_for(s[y_valid == 0], FP_TARGET)
            recall = float(np.mean(s[y_valid == 1] >= t))
            fp = float(np.mean(s[y_valid == 0] >= t))
            # The choice: mean recall at benign FP 0.2%, 0.5% and 1% (less
            # noisy than one point); ties go to the longer window.
            quality = float(np.mean([np.mean(s[y_valid == 1] >= threshold_for(s[y_valid == 0], f))
                                     for f in (0.002, 0.005, 0.01)]))
            results.append((window, alpha, C, recall, fp, t, quality))
            print(f"window {window} alpha {alpha} C {C}: valid recall {recall:.3f} fp {fp:.4f} threshold {t:.4f} "
                  f"quality {quality:.4f}", file=sys.stderr)
            if best is None or quality >= best[0] - 1e-9:
                best = (quality, window, alpha, C, clf, t)
    _, window, alpha, C, clf, t = best
    q = write_model(MODEL, clf.coef_[0], clf.intercept_[0], window, alpha)
    nonzero = int(np.count_nonzero(q))
    # The threshold goes into the Rust constant.
    src = open(RUST, encoding="utf-8").read()
    src = re.sub(r"pub const THRESHOLD: f32 = [0-9.e-]+;", f"pub const THRESHOLD: f32 = {t:.4f};", src)
    open(RUST, "w", encoding="utf-8").write(src)
    t = float(f"{t:.4f}")
    report(train, valid, heldout, (window, alpha), C, t, results, nonzero, time.time() - t0)


def is_cjk(c):
    u = ord(c)
    return (0x3040 <= u <= 0x30ff or 0x3400 <= u <= 0x4dbf or 0x4e00 <= u <= 0x9fff or 0xac00 <= u <= 0xd7af
            or 0xf900 <= u <= 0xfaff or 0x20000 <= u <= 0x2ffff)


def enough_words(text):
    """`enough_words` in injection_model.rs: MIN_WORDS words, each CJK character one."""
    words, in_word = 0, False
    for c in text:
        if is_cjk(c):
            words, in_word = words + 1, False
        elif c.isalnum():
            words, in_word = words + (not in_word), True
        else:
            in_word = False
    return words >= MIN_WORDS


def rate(mask, hits):
    n = int(mask.sum())
    return (float(hits[mask].mean()) if n else float("nan")), n


def report(train, valid, heldout, shape, C, t, results, nonzero, seconds):
    window, alpha = shape
    s = scores(heldout, MODEL)
    rules = rule_scores(heldout, MODEL)
    y = np.array([r["label"] for r in heldout])
    hit = s >= t
    rule_hit = rules >= 0.5
    # As shipped: the model only scores texts of MIN_WORDS words or more.
    scored = np.array([enough_words(r["text"]) for r in heldout])
    both = (hit & scored) | rule_hit
    strong = (hit & scored) | (rules >= 1.0)
    lines = ["# Prompt-injection model: corpus and held-out figures", "",
             "Written by `eval/injection/train.py` (do not edit by hand). Corpus: "
             "`eval/injection/build_corpus.py`, sources in `SOURCES.md`.", ""]
    allrows = [dict(r, split=sp_) for sp_, rows in (("train", train), ("valid", valid), ("heldout", heldout))
               for r in rows]
    lines += ["## Corpus", "", "| split | injections | benign |", "|---|---:|---:|"]
    for name, rows in (("train", train), ("valid", valid), ("heldout", heldout)):
        c = Counter(r["label"] for r in rows)
        lines.append(f"| {name} | {c[1]} | {c[0]} |")
    lines += ["", "By source (all splits):", "", "| source | label | samples | hand-written |", "|---|---|---:|---|"]
    by_source = Counter((r["source"].split("+")[0], r["label"], r["handwritten"]) for r in allrows)
    for (src, label, handwritten), n in sorted(by_source.items()):
        lines.append(f"| {src} | {'injection' if label else 'benign'} | {n} | {'yes' if handwritten else 'no'} |")
    lines += ["", "By language (all splits):", "", "| lang | injections | benign |", "|---|---:|---:|"]
    by_lang = defaultdict(Counter)
    for r in allrows:
        by_lang[r["lang"]][r["label"]] += 1
    for lang in sorted(by_lang):
        lines.append(f"| {lang} | {by_lang[lang][1]} | {by_lang[lang][0]} |")
    lines += ["", "## Model", "",
              f"Logistic regression (liblinear, balanced classes, C={C}) over 2^{BITS} hashed features, "
              f"weights quantised to i8 ({nonzero} non-zero buckets); window {window} characters "
              f"(a longer text scores as its highest-scoring window); weight sums divided by the feature count "
              f"to the power {alpha}.", "",
              "Candidates (validation split; threshold = lowest score with benign FP <= "
              f"{FP_TARGET:.1%} on validation):", "",
              "| window | alpha | C | valid recall | valid FP | threshold | mean valid recall at FP 0.2/0.5/1% (the choice) |",
              "|---:|---:|---:|---:|---:|---:|---:|"]
    for w, a, c, r, f, th, qu in results:
        lines.append(f"| {w} | {a} | {c} | {r:.3f} | {f:.4f} | {th:.4f} | {qu:.4f} |")
    lines += ["", f"Chosen: window {window}, alpha {alpha}, C {C}, **threshold {t}** (`THRESHOLD` in injection_model.rs).",
              "", "## Held-out split", "",
              "Not used for fitting, for the hyper-parameters or for the threshold. Its figures were looked at "
              "a few times while the corpus and features were developed (which led to the multilingual templates, "
              "the window training, the length normalisation and MIN_WORDS = 4, which the validation split could not "
              "tell from 5 or 6: the held-out split showed short extraction prompts it keeps), so read them as "
              "somewhat optimistic; the "
              "hand-written items (multilingual especially) were written by the same author as the training "
              "templates. The target is recall on English and the seven issue languages; spikee's Zulu, "
              "Albanian, Irish and Scots Gaelic items are reported apart.", "",
              "| slice | n | model | rules (injection.rs, >= 0.5) | as shipped: model (texts of MIN_WORDS words or more) OR rules >= 0.5 | the same, rules >= 1.0 |",
              "|---|---:|---:|---:|---:|---:|"]

    def row(name, mask):
        m, n = rate(mask, hit)
        r_, _ = rate(mask, rule_hit)
        b, _ = rate(mask, both)
        st, _ = rate(mask, strong)
        lines.append(f"| {name} | {n} | {m:.3f} | {r_:.3f} | {b:.3f} | {st:.3f} |")

    pos, neg = y == 1, y == 0
    cats = np.array([r["category"] for r in heldout])
    langs = np.array([r["lang"] for r in heldout])
    in_scope = np.isin(langs, list(IN_SCOPE))
    row("**injection recall, en + fr/de/es/pt/zh/ru/ja (the target)**", pos & in_scope)
    row("injection recall, all (also zu/sq/ga/gd from spikee)", pos)
    row("recall: zu/sq/ga/gd (out of scope)", pos & ~in_scope)
    for c in CATEGORIES:
        if ((cats == c) & pos).any():
            row(f"recall: {c}", (cats == c) & pos)
    for lang in ["fr", "de", "es", "pt", "zh", "ru", "ja"]:
        if ((langs == lang) & pos).any():
            row(f"recall: {lang} (multilingual)", (langs == lang) & pos)
    row("**benign false positives, all**", neg)
    hard = np.isin(cats, ["hard_negative", "security_discussion", "benign_role_play"])
    row("benign FP: hard negatives (security talk, benign role-play)", neg & hard)
    for c in sorted(set(cats[neg])):
        row(f"benign FP: {c}", neg & (cats == c))
    multi = np.isin(langs, ["fr", "de", "es", "pt", "zh", "ru", "ja"])
    row("benign FP: fr/de/es/pt/zh/ru/ja", neg & multi)
    lines += ["", "Held-out misses and false positives (model):", ""]
    for r, sc, h in zip(heldout, s, hit):
        if (r["label"] == 1) != h:
            kind = "missed" if r["label"] else "false positive"
            text = r["text"][:140].replace("\n", " ").replace("|", "/")
            lines.append(f"- {kind} ({r['category']}, {r['lang']}, {sc:.3f}): {text}")
    lines += ["", f"Training took {seconds:.0f} s.", ""]
    with open(os.path.join(HERE, "REPORT.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    print("\n".join(lines[:0]), file=sys.stderr)
    m, _ = rate(pos & in_scope, hit)
    f_, _ = rate(neg, hit)
    print(f"held-out recall (en + 7 languages) {m:.3f}, benign FP {f_:.4f}, threshold {t}", file=sys.stderr)


if __name__ == "__main__":
    main()
