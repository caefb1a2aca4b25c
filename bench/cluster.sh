#!/usr/bin/env bash
# C-BTM clustering, btm against scikit-learn, side by side in one run at 1 and 2 ranks.
#
#   bash bench/cluster.sh [--ranks "1 2"] [--k 8] [--out DIR]
#
# Corpus: the training splits of the paper8 corpus (PAPER8, default /work/shared/corpora/
# paper8) when present, else the quickstart corpus (data/quickstart/corpus.jsonl, built by
# scripts/quickstart-corpus.sh). btm's prepare (tokenizer + data.h5) runs once, outside the
# timings; both sides are then timed from documents to labels:
#   btm      the cluster phase alone (mpirun -n P btm run DECK --phases cluster, clusters.h5
#            removed first): reading data.h5, decoding the documents, tf-idf, SVD, balanced
#            k-means, assigning every document of every split, writing clusters.h5 and
#            clustered.h5. Reported: the phase's own seconds= (process start-up excluded) and
#            the mpirun wall time.
#   sklearn  bench/cluster_sklearn.py: texts already in memory -> TfidfVectorizer (the C-BTM
#            reference vectorizer) -> TruncatedSVD(100) -> Normalizer -> KMeans(k, one
#            k-means++ start), with P BLAS/OpenMP threads; at 1 thread also KMeans with
#            n_init=10 (scikit-learn 1.2's default). Python start-up and JSON reading excluded.
# At the largest rank count btm also runs with cluster.assign = "balanced" and with
# cluster.method = "unbalanced" (plain k-means, like the peer).
# Each line: wall seconds, balance = min/max cluster size over the training documents,
# purity and NMI against the domains. Ratio = sklearn seconds / btm seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

ranks="1 2"
k=8
out="runs/cluster-bench"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --ranks) ranks="$2"; shift 2 ;;
    --k) k="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    *) echo "usage: bash bench/cluster.sh [--ranks \"1 2\"] [--k 8] [--out DIR]" >&2; exit 2 ;;
  esac
done
BTM=${BTM:-build/btm}
PY=${PY:-/usr/bin/python3}
[[ -x "$BTM" ]] || { echo "bench/cluster.sh: $BTM not found; build first (scripts/build.sh)" >&2; exit 1; }

paper8=${PAPER8:-/work/shared/corpora/paper8}
if [[ -d "$paper8" ]]; then
  corpus="$paper8"
  sets=(--set data.format='"split_jsonl"')
  domains="forum,legal,medical,scripture,dictionary,software-docs,unix-manuals,code-go"
  fractions=()
else
  corpus="data/quickstart/corpus.jsonl"
  [[ -f "$corpus" ]] || bash scripts/quickstart-corpus.sh
  domains="scripture,fortunes,python-docs,go-code"
  sets=(--set data.format='"jsonl"' --set 'data.heldout_domains=["perl-docs", "tech-lexicon"]'
        --set data.vocab_size=4096 --set data.valid_fraction=0.1 --set data.test_fraction=0.1)
  fractions=(--valid-fraction 0.1 --test-fraction 0.1)
fi
list="[\"${domains//,/\", \"}\"]"
sets+=(--set "data.corpus=\"$corpus\"" --set "data.train_domains=$list" --set "run.out_dir=\"$out\""
       --set cluster.k="$k")

cpu=$(grep -m1 "model name" /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
echo "# bench/cluster.sh $(date -u +%Y-%m-%dT%H:%MZ) cpu=\"$cpu\" cores=$(getconf _NPROCESSORS_ONLN) corpus=$corpus k=$k"
echo "# prepare (not timed)"
mpirun -n 2 "$BTM" run bench/cluster_bench.toml "${sets[@]}" --phases prepare > "$out.prepare.log" 2>&1 ||
  { tail -20 "$out.prepare.log"; exit 1; }

field() { grep -o "$1=[^ ]*" | tail -1 | cut -d= -f2; }
# btm's cluster phase at P ranks with extra --set flags; prints one line, sets btm_s.
run_btm() {
  local p="$1" label="$2"; shift 2
  rm -f "$out/clusters.h5" "$out/clustered.h5"
  local t0 wall log sizes
  t0=$(date +%s.%N)
  mpirun -n "$p" "$BTM" run bench/cluster_bench.toml "${sets[@]}" "$@" --phases cluster > "$out.cluster.$p.log" 2>&1 ||
    { tail -20 "$out.cluster.$p.log"; exit 1; }
  wall=$(echo "$(date +%s.%N) - $t0" | bc)
  log=$(grep "^cluster:" "$out.cluster.$p.log")
  btm_s=$(echo "$log" | grep "cluster: wrote" | field seconds)
  sizes=$(echo "$log" | grep "cluster: sizes")
  printf "ranks=%s btm %s seconds=%s wall=%.2f min=%s max=%s balance=%s purity=%s nmi=%s vocabulary=%s\n" "$p" "$label" \
    "$btm_s" "$wall" "$(echo "$sizes" | field min)" "$(echo "$sizes" | field max)" "$(echo "$sizes" | field balance)" \
    "$(echo "$sizes" | field purity)" "$(echo "$sizes" | field nmi)" "$(echo "$log" | field vocabulary)"
  echo "  $(echo "$log" | grep "cluster: wrote" | sed 's/.*clustered.h5 //')"
}

for p in $ranks; do
  run_btm "$p" "method=balanced assign=nearest"
  reference_s=$btm_s
  for n_init in 1 10; do
    [[ $n_init == 10 && $p != 1 ]] && continue  # the ten-start peer once, as a quality reference
    sk=$("$PY" bench/cluster_sklearn.py --corpus "$corpus" --domains "$domains" --k "$k" --threads "$p" \
         --n-init "$n_init" "${fractions[@]}")
    sk_s=$(echo "$sk" | field seconds)
    printf "ranks=%s %s ratio=%.2f\n" "$p" "$sk" "$(echo "$sk_s / $reference_s" | bc -l)"
  done
  if [[ $p == "${ranks##* }" ]]; then  # the variants at the largest rank count
    run_btm "$p" "method=balanced assign=balanced" --set cluster.assign='"balanced"'
    run_btm "$p" "method=unbalanced" --set cluster.method='"unbalanced"'
  fi
done
