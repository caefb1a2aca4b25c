#!/usr/bin/env python3
"""Builds the quickstart corpus from unpacked Debian packages (standard library only).

Called by scripts/quickstart-corpus.sh with --root pointing at the folder the packages
were unpacked into (dpkg-deb -x). Writes one JSON object per line, {"id", "domain",
"text"}, domains in a fixed order, documents in source order.

Every text: CRLF/CR -> LF, control characters other than TAB/LF removed, trailing blanks
removed, leading/trailing empty lines removed. Documents under 200 bytes (UTF-8) are
dropped. A domain above the cap keeps the documents that come first in the order of
sha256(id) while they fit (so the kept set is spread over the whole source, not just its
beginning), written in source order. Nothing depends on time, locale or file-system order.
"""
import argparse
import gzip
import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

MIN_BYTES = 200
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
TRAILING = re.compile(r"[ \t]+$", re.MULTILINE)


def clean(text):
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = CONTROL.sub("", text)
    text = TRAILING.sub("", text)
    return text.strip("\n")


def read_text(path):
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")  # old fortune files; every byte is a character


def sorted_files(root, pattern):
    return sorted(p for p in root.glob(pattern) if p.is_file() and not p.is_symlink())


def need(path, package):
    if not path.exists():
        sys.exit(f"error: {path} not found: is the Debian package {package} unpacked under --root?")
    return path


# --- domains -------------------------------------------------------------------------

def scripture(root):
    """One document per chapter, one verse per line, printed by the package's own program."""
    program = need(root / "usr/bin/bible", "bible-kjv")
    data_dir = need(root / "usr/lib/bible.data", "bible-kjv-text").parent
    out = subprocess.run([str(program), "-f", "-p", str(data_dir), "Gen1:1-Rev22:21"],
                         check=True, capture_output=True).stdout.decode("utf-8", "replace")
    verse = re.compile(r"^(\S+?)(\d+):(\d+) (.*)$")
    chapters = {}
    order = []
    for line in out.splitlines():
        m = verse.match(line)
        if not m:
            if line.strip():
                sys.exit(f"error: unexpected line from bible: {line[:80]!r}")
            continue
        key = f"{m.group(1)}{m.group(2)}"
        if key not in chapters:
            chapters[key] = []
            order.append(key)
        chapters[key].append(m.group(4))
    if len(order) != 1189:
        sys.exit(f"error: expected 1189 chapters from bible, got {len(order)}")
    for key in order:
        yield key, "\n".join(chapters[key])


def fortunes(root):
    """Fortune cookies (entries between '%' lines), grouped into documents of >= 400 bytes."""
    base = need(root / "usr/share/games/fortunes", "fortunes")
    files = [p for p in sorted_files(base, "*") if p.suffix not in (".dat", ".u8")]
    for path in files:
        entries = [clean(e) for e in re.split(r"^%[ \t]*$", read_text(path), flags=re.MULTILINE)]
        entries = [e for e in entries if e]
        group, size, part = [], 0, 0
        for e in entries:
            group.append(e)
            size += len(e.encode("utf-8"))
            if size >= 400:
                part += 1
                yield f"{path.name}/{part}", "\n%\n".join(group)
                group, size = [], 0
        if group:
            part += 1
            yield f"{path.name}/{part}", "\n%\n".join(group)


def python_docs(root):
    base = need(root / "usr/share/doc/python3.11/html/_sources", "python3.11-doc")
    for path in sorted_files(base, "**/*.rst.txt"):
        yield path.relative_to(base).as_posix(), read_text(path)


def go_code(root):
    base = need(root / "usr/share/go-1.19/src", "golang-1.19-src")
    for path in sorted_files(base, "**/*.go"):
        rel = path.relative_to(base)
        if path.name.endswith("_test.go") or "testdata" in rel.parts:
            continue
        yield rel.as_posix(), read_text(path)


def perl_docs(root):
    base = need(root / "usr/share/perl", "perl-doc")
    for path in sorted_files(base, "**/*.pod"):
        yield path.relative_to(base).as_posix(), read_text(path)


B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def b64_number(s):
    n = 0
    for c in s:
        n = n * 64 + B64.index(c)
    return n


def tech_lexicon(root):
    """FOLDOC dictd entries in data-file order, 20 per document; {cross-reference} braces removed."""
    base = root / "usr/share/dictd"
    index = need(base / "foldoc.index", "dict-foldoc").read_text(encoding="utf-8")
    data = gzip.open(need(base / "foldoc.dict.dz", "dict-foldoc")).read()
    spans = set()
    for line in index.splitlines():
        parts = line.split("\t")
        if len(parts) < 3 or parts[0].startswith("00-database") or parts[0].startswith("00database"):
            continue
        spans.add((b64_number(parts[1]), b64_number(parts[2])))
    entries = [clean(data[o:o + n].decode("utf-8", "replace").replace("{", "").replace("}", ""))
               for o, n in sorted(spans)]
    entries = [e for e in entries if e]
    for i in range(0, len(entries), 20):
        yield f"foldoc/{i // 20 + 1}", "\n\n".join(entries[i:i + 20])


DOMAINS = [
    ("scripture", scripture),
    ("fortunes", fortunes),
    ("python-docs", python_docs),
    ("go-code", go_code),
    ("perl-docs", perl_docs),
    ("tech-lexicon", tech_lexicon),
]


def capped(docs, cap_bytes):
    """Documents that fit the cap, taken in sha256(id) order, returned in source order."""
    total = sum(n for _, _, n in docs)
    if cap_bytes <= 0 or total <= cap_bytes:
        return docs
    keep, used = set(), 0
    for i in sorted(range(len(docs)), key=lambda i: hashlib.sha256(docs[i][0].encode()).hexdigest()):
        n = docs[i][2]
        if used + n <= cap_bytes:
            keep.add(i)
            used += n
    return [d for i, d in enumerate(docs) if i in keep]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", required=True, type=Path, help="folder the .deb files were unpacked into")
    ap.add_argument("--out", required=True, type=Path, help="corpus.jsonl to write")
    ap.add_argument("--max-mb", type=float, default=1.5, help="cap per domain, MB of UTF-8 text (0: none)")
    args = ap.parse_args()

    cap = int(args.max_mb * 1e6)
    tmp = args.out.with_name(args.out.name + ".tmp")
    rows = []
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        for domain, source in DOMAINS:
            docs, short = [], 0
            for sid, text in source(args.root):
                text = clean(text)
                n = len(text.encode("utf-8"))
                if n < MIN_BYTES:
                    short += 1
                    continue
                docs.append((f"{domain}/{sid}", text, n))
            found = len(docs)
            docs = capped(docs, cap)
            if not docs:
                sys.exit(f"error: domain {domain} has no documents")
            for doc_id, text, _ in docs:
                f.write(json.dumps({"id": doc_id, "domain": domain, "text": text}, ensure_ascii=False))
                f.write("\n")
            rows.append((domain, len(docs), found, short, sum(n for _, _, n in docs) / 1e6))
    os.replace(tmp, args.out)

    print(f"{'domain':<14} {'docs':>6} {'of':>6} {'short':>6} {'MB':>7}")
    for domain, kept, found, short, mb in rows:
        print(f"{domain:<14} {kept:>6} {found:>6} {short:>6} {mb:>7.3f}")
    print(f"{'total':<14} {sum(r[1] for r in rows):>6} {'':>6} {'':>6} {sum(r[4] for r in rows):>7.3f}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
