#!/usr/bin/python3
"""scikit-learn reference for btm's C-BTM clustering (tests/cluster/test_sklearn_reference.cpp).

Vectorizes a fixture with the C-BTM reference vectorizer (TfidfVectorizer whose tokenizer maps
words starting with a digit to "#NUMBER"; stop words: ENGLISH_STOP_WORDS plus "#NUMBER"),
takes the exact truncated SVD of the tf-idf matrix (numpy's dense SVD: TruncatedSVD's
randomised solver is itself approximate), and scores a few labelings with purity and
normalized_mutual_info_score. Writes everything, the texts included, to one HDF5 file.

  /usr/bin/python3 tests/reference/cluster_reference.py OUT.h5
"""
import gzip
import json
import pathlib
import sys
import warnings

import h5py
import numpy as np
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, TfidfVectorizer
from sklearn.metrics import normalized_mutual_info_score
from sklearn.metrics.cluster import contingency_matrix

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests/data/fixtures/split_jsonl"
DIMS = 5

# Texts that exercise the tokenisation: numbers, case, Unicode letters and punctuation.
EXTRA = [
    "In 1984, the 3rd edition cost $12.50; version v2 of x86 code ran in 2001.",
    "\u201cCaf\u00c9 na\u00efve\u201d \u2014 \u0391\u0392\u0393 \u03b4\u03b5\u03b6, Stra\u00dfe and \u00c5ngstr\u00f6m units.",
    "snake_case identifiers_like_this and CamelCase ones; under_score 42nd street",
]


def number_normalizer(tokens):
    return ("#NUMBER" if token[0].isdigit() else token for token in tokens)


class NumberNormalizingVectorizer(TfidfVectorizer):
    def build_tokenizer(self):
        tokenize = super().build_tokenizer()
        return lambda doc: list(number_normalizer(tokenize(doc)))


def main(out):
    texts, domains = [], []
    for d, domain in enumerate(sorted(p.name for p in FIXTURE.iterdir())):
        path = FIXTURE / domain / "train.jsonl.gz"
        if not path.exists():
            continue
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for line in f:
                texts.append(json.loads(line)["text"])
                domains.append(d)
    texts += EXTRA
    domains += [0, 1, 2]
    stop = list(ENGLISH_STOP_WORDS.union(["#NUMBER"]))
    # The reference's own stop list; scikit-learn warns that "#NUMBER" is no word.
    warnings.filterwarnings("ignore", message="Your stop_words may be inconsistent")
    vectorizer = NumberNormalizingVectorizer(stop_words=stop)
    x = vectorizer.fit_transform(texts).toarray()
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    rng = np.random.default_rng(0)
    labelings = [np.array(domains), rng.integers(0, 3, len(texts)), np.arange(len(texts)) % 4,
                 np.zeros(len(texts), dtype=int)]
    purity, nmi = [], []
    for lab in labelings:
        m = contingency_matrix(np.array(domains), lab)
        purity.append(m.max(axis=0).sum() / m.sum())
        nmi.append(normalized_mutual_info_score(np.array(domains), lab))
    with h5py.File(out, "w") as f:
        f["texts"] = np.array(texts, dtype=h5py.string_dtype("utf-8"))
        f["domains"] = np.array(domains, dtype=np.int32)
        f["vocabulary"] = np.array(vectorizer.get_feature_names_out().tolist(), dtype=h5py.string_dtype("utf-8"))
        f["idf"] = vectorizer.idf_
        f["tfidf"] = x
        f["singular_values"] = s[:DIMS]
        f["components"] = vt[:DIMS]
        f["labelings"] = np.stack(labelings).astype(np.int32)
        f["purity"] = np.array(purity)
        f["nmi"] = np.array(nmi)
    print(f"cluster reference: {len(texts)} texts, vocabulary {x.shape[1]}, singular values {s[:DIMS].round(4)}")


if __name__ == "__main__":
    main(sys.argv[1])
