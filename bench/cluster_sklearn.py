#!/usr/bin/env python3
"""scikit-learn side of bench/cluster.sh: the C-BTM reference clustering of the same documents.

Reads the training documents (the train split of each training domain: <corpus>/<domain>/
train.jsonl.gz, or btm's hash split of a JSONL corpus such as the quickstart one) and
times the reference pipeline from texts in memory to labels: NumberNormalizingVectorizer
(TfidfVectorizer, numbers -> "#NUMBER", English stop words + "#NUMBER") -> TruncatedSVD(dims)
-> Normalizer -> KMeans(k, one k-means++ start, like btm) -> labels. Prints one key=value line.

  python3 bench/cluster_sklearn.py --corpus DIR --domains a,b,c --k 8 [--dims 100] [--threads 1]
"""
import argparse
import gzip
import json
import os
import pathlib
import time


def number_normalizer(tokens):
    return ("#NUMBER" if token[0].isdigit() else token for token in tokens)


def fnv1a64(data):
    h = 14695981039346656037
    for c in data:
        h = ((h ^ c) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h


def mix64(x):
    x = (x + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return x ^ (x >> 31)


def in_train_split(doc_id, valid_fraction, test_fraction):
    """btm's hash split (src/data/split.cpp) for documents without a split."""
    u = (mix64(fnv1a64(doc_id.encode("utf-8"))) >> 11) * 2.0**-53
    return u >= valid_fraction + test_fraction


def read_documents(corpus, domains, valid_fraction, test_fraction):
    """The train split of each training domain: <corpus>/<domain>/train.jsonl.gz, or the
    documents of a JSONL file that btm's hash split puts in train (the quickstart corpus)."""
    texts, labels = [], []
    corpus = pathlib.Path(corpus)
    if corpus.is_dir():
        for d, domain in enumerate(domains):
            with gzip.open(corpus / domain / "train.jsonl.gz", "rt", encoding="utf-8") as f:
                for line in f:
                    texts.append(json.loads(line)["text"])
                    labels.append(d)
        return texts, labels
    index = {d: i for i, d in enumerate(domains)}
    with open(corpus, encoding="utf-8") as f:
        for line in f:
            doc = json.loads(line)
            if doc["domain"] in index and doc["text"] and in_train_split(doc["id"], valid_fraction, test_fraction):
                texts.append(doc["text"])
                labels.append(index[doc["domain"]])
    return texts, labels


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--domains", required=True)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--dims", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--n-init", type=int, default=1)
    ap.add_argument("--valid-fraction", type=float, default=0.05)
    ap.add_argument("--test-fraction", type=float, default=0.05)
    args = ap.parse_args()
    # Thread counts must be set before numpy/scipy load their BLAS.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    import numpy as np
    import sklearn
    from sklearn.cluster import KMeans
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, TfidfVectorizer
    from sklearn.metrics import normalized_mutual_info_score
    from sklearn.metrics.cluster import contingency_matrix
    from sklearn.preprocessing import Normalizer
    import warnings
    warnings.filterwarnings("ignore")

    class NumberNormalizingVectorizer(TfidfVectorizer):
        def build_tokenizer(self):
            tokenize = super().build_tokenizer()
            return lambda doc: list(number_normalizer(tokenize(doc)))

    texts, labels = read_documents(args.corpus, args.domains.split(","), args.valid_fraction, args.test_fraction)
    t0 = time.perf_counter()
    stop = list(ENGLISH_STOP_WORDS.union(["#NUMBER"]))
    x = NumberNormalizingVectorizer(stop_words=stop).fit_transform(texts)
    t1 = time.perf_counter()
    e = Normalizer(copy=False).fit_transform(TruncatedSVD(n_components=args.dims, random_state=0).fit_transform(x))
    t2 = time.perf_counter()
    pred = KMeans(n_clusters=args.k, n_init=args.n_init, random_state=0).fit_predict(e)
    t3 = time.perf_counter()
    sizes = np.bincount(pred, minlength=args.k)
    m = contingency_matrix(np.array(labels), pred)
    purity = m.max(axis=0).sum() / m.sum()
    nmi = normalized_mutual_info_score(labels, pred)
    print(f"peer=sklearn-{sklearn.__version__} threads={args.threads} n_init={args.n_init} docs={len(texts)} "
          f"vocabulary={x.shape[1]} tfidf_s={t1 - t0:.2f} svd_s={t2 - t1:.2f} kmeans_s={t3 - t2:.2f} "
          f"seconds={t3 - t0:.2f} min={sizes.min()} max={sizes.max()} balance={sizes.min() / sizes.max():.3f} "
          f"purity={purity:.3f} nmi={nmi:.3f}")


if __name__ == "__main__":
    main()
