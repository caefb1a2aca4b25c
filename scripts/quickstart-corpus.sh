#!/usr/bin/env bash
# Builds the quickstart corpus (inputs/quickstart.toml) from Debian packages:
#   OUT_DIR/corpus.jsonl  one JSON object per line: {"id", "domain", "text"}
# Domains: scripture, fortunes, python-docs, go-code, perl-docs, tech-lexicon.
#
# usage: scripts/quickstart-corpus.sh [OUT_DIR] [--force] [--max-mb MB]
#   OUT_DIR    default data/quickstart
#   --force    rebuild even when OUT_DIR/corpus.jsonl exists
#   --max-mb   cap per domain in MB of UTF-8 text (default 1.5)
#
# Needs no root: the packages are fetched with `apt-get download` (apt's package lists
# must exist) and unpacked with `dpkg-deb -x` into a scratch folder that is removed at
# the end. The text is extracted by scripts/quickstart/build_corpus.py (python3, standard
# library only). The output depends only on the package versions: same packages, same file.
set -euo pipefail

out_dir="data/quickstart"
force=0
max_mb="1.5"
out_set=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --force) force=1 ;;
    --max-mb) [[ $# -ge 2 ]] || { echo "error: --max-mb needs a value" >&2; exit 2; }
              max_mb="$2"; shift ;;
    --max-mb=*) max_mb="${1#--max-mb=}" ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) if [[ $out_set -eq 1 ]]; then echo "error: unexpected argument $1" >&2; exit 2; fi
       out_dir="$1"; out_set=1 ;;
  esac
  shift
done

corpus="$out_dir/corpus.jsonl"
if [[ -f "$corpus" && $force -eq 0 ]]; then
  echo "quickstart corpus exists: $corpus (use --force to rebuild)"
  exit 0
fi

for tool in apt-get dpkg-deb python3; do
  command -v "$tool" >/dev/null || { echo "error: $tool not found (needed to build the quickstart corpus)" >&2; exit 1; }
done

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
scratch="$(mktemp -d "${TMPDIR:-/tmp}/btm-quickstart.XXXXXX")"
trap 'rm -rf "$scratch"' EXIT

packages=(bible-kjv bible-kjv-text fortunes fortunes-min python3.11-doc golang-1.19-src perl-doc dict-foldoc)
echo "downloading: ${packages[*]}"
if ! (cd "$scratch" && apt-get download "${packages[@]}" >"$scratch/apt.log" 2>&1); then
  cat "$scratch/apt.log" >&2
  echo >&2
  echo "error: apt-get download failed. apt's package lists are probably missing or stale; run" >&2
  echo "    sudo apt-get update" >&2
  echo "and then this script again. (Without sudo: ask an administrator to run it.)" >&2
  exit 1
fi

echo "unpacking"
mkdir -p "$scratch/root"
for deb in "$scratch"/*.deb; do
  dpkg-deb -x "$deb" "$scratch/root"
done

mkdir -p "$out_dir"
python3 "$here/quickstart/build_corpus.py" --root "$scratch/root" --out "$corpus" --max-mb "$max_mb"
