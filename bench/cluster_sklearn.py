#!/usr/bin/env python3
"""scikit-learn side of bench/cluster.sh: the C-BTM reference clustering of the same documents.

Reads the training documents (the train split of each training domain: <corpus>/<domain>/
train.jsonl.gz, or a JSONL file with "split"/"domain" fields for the quickstart corpus) and
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


def read_documents(corpus, domains):
    texts, labels = [], []
    corpus = pathlib.Path(corpus)
    for d, domain in enumerate(domains):
        path = corpus / domain / "train.jsonl.gz"
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for line in f:
                texts.append(json.loads(line)["text"])
                labels.append(d)
    return texts, labels


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--domains", required=True)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--dims", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--n-init", type=int, default=1)
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

    texts, labels = read_documents(args.corpus, args.domains.split(","))
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
