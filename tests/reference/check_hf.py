#!/usr/bin/python3
"""btm's Hugging Face export and import, checked with transformers itself.

Run (ctest does this; label `hf`):
  /usr/bin/python3 tests/reference/check_hf.py --btm build/btm --probe build/tests/model/hf_probe \
      --venv ~/.cache/btm/hf-venv --work build/tests/reference/hf_work

The first run makes the virtual environment --venv (or $BTM_HF_VENV when set, e.g. a folder
that outlives fresh build folders) with torch (CPU use), transformers, safetensors,
sentencepiece and protobuf from PyPI; later runs reuse it. When that cannot
be done (no network), the check exits with 77, which ctest reports as skipped.

Checks, all in float32:
- export: btm model files (dense with grouped KV heads, dense with tied embeddings, Mixtral
  with top-k routing, Mixtral from btm's soft routing)
  go through `btm export`; AutoModelForCausalLM.from_pretrained loads each folder and its
  logits equal btm's (KV-cache decoder, tests/model/hf_probe) within 1e-4; the exported
  tokenizer (AutoTokenizer, slow and fast) encodes like btm's SentencePiece model;
- import: random LlamaForCausalLM (GQA) and MixtralForCausalLM models written by
  save_pretrained (sharded; fp32 and bf16) go through `btm import`; btm's logits equal
  transformers' within 1e-4.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys

SKIP = 77
PACKAGES = ["torch", "transformers", "safetensors", "sentencepiece", "protobuf"]
TOLERANCE = 1e-4

TEXTS = [
    "And the LORD said unto Moses,",
    "  two leading spaces and  double  spaces",
    "def f(x):\n\treturn x + 12345  # tabs, digits\n",
    "Ünïcödé — façade, naïve; 日本語 text",
    "trailing space ",
    "",
    " ",
    "line one\n\nline three\n",
]


def ensure_venv(venv):
    """Returns the venv's python with the packages importable, or None (reason printed)."""
    python = os.path.join(venv, "bin", "python")
    probe = "import torch, transformers, safetensors, sentencepiece, google.protobuf"
    if os.path.exists(python) and subprocess.run([python, "-c", probe], capture_output=True).returncode == 0:
        return python
    print(f"check_hf: creating {venv} with {' '.join(PACKAGES)} from PyPI (once; reused later)", flush=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", "--clear", venv], check=True)
        subprocess.run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *PACKAGES],
                       check=True, timeout=1500)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as e:
        print(f"check_hf: SKIPPED: cannot install {' '.join(PACKAGES)} into {venv} ({e}); "
              "the check needs PyPI once", flush=True)
        return None
    if subprocess.run([python, "-c", probe]).returncode != 0:
        print(f"check_hf: SKIPPED: {venv} was installed but `{probe}` fails", flush=True)
        return None
    return python


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"check_hf: FAILED: {' '.join(map(str, cmd))} exited {r.returncode}\n{r.stdout}\n{r.stderr}")
    return r.stdout


class Checks:
    def __init__(self, args):
        import numpy as np
        import torch
        import transformers

        self.np, self.torch, self.tf = np, torch, transformers
        self.args = args
        self.failures = []
        torch.manual_seed(0)

    def check(self, ok, what):
        print(("ok      " if ok else "FAILED  ") + what, flush=True)
        if not ok:
            self.failures.append(what)

    def btm_logits(self, model_h5, ids):
        out = os.path.join(self.args.work, "logits.bin")
        run([self.args.probe, "logits", model_h5, out, ",".join(map(str, ids))])
        return self.np.fromfile(out, dtype=self.np.float32).reshape(len(ids), -1)

    def hf_logits(self, folder, ids):
        model = self.tf.AutoModelForCausalLM.from_pretrained(folder, dtype=self.torch.float32,
                                                             attn_implementation="eager")
        model.eval()
        with self.torch.no_grad():
            return model, model(self.torch.tensor([ids])).logits[0].numpy()

    def compare(self, what, btm, hf):
        diff = float(abs(btm - hf).max()) if btm.shape == hf.shape else float("inf")
        scale = float(abs(hf).max())
        self.check(diff <= TOLERANCE, f"{what}: logits {btm.shape} max |btm - transformers| = {diff:.2e} "
                                      f"(max |logit| {scale:.2f}, tolerance {TOLERANCE:g})")

    def ids(self, vocab, n=24):
        return [int(i) for i in self.torch.randint(0, vocab, (n,))]

    # -------------------------------------------------------------------------------- export
    def export(self):
        models = os.path.join(self.args.work, "models")
        run([self.args.probe, "models", models])
        for name, arch, extra in [("dense_gqa", "LlamaForCausalLM", []),
                                  ("dense_tied", "LlamaForCausalLM", []),
                                  ("mixtral", "MixtralForCausalLM", ["--shard-size", "40KB"]),
                                  ("mixtral_soft", "MixtralForCausalLM", [])]:
            h5 = os.path.join(models, name + ".h5")
            folder = os.path.join(self.args.work, "export", name)
            run([self.args.btm, "export", h5, folder, *extra])
            config = json.load(open(os.path.join(folder, "config.json")))
            self.check(config["architectures"] == [arch], f"export {name}: architectures {config['architectures']}")
            ids = self.ids(config["vocab_size"])
            model, hf = self.hf_logits(folder, ids)
            self.check(type(model).__name__ == arch, f"export {name}: transformers loads a {type(model).__name__}")
            if name == "dense_tied":
                self.check(model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr(),
                           "export dense_tied: lm_head is tied to embed_tokens")
            self.compare(f"export {name}", self.btm_logits(h5, ids), hf)
        self.tokenizer(os.path.join(self.args.work, "export", "dense_gqa"), os.path.join(models, "dense_gqa.h5"))

    def tokenizer(self, folder, h5):
        texts = os.path.join(self.args.work, "texts.json")
        json.dump(TEXTS, open(texts, "w"))
        btm_ids = [json.loads(line) for line in run([self.args.probe, "encode", h5, texts]).splitlines()]
        for fast in (False, True):
            kind = "fast" if fast else "slow"
            tok = self.tf.AutoTokenizer.from_pretrained(folder, use_fast=fast)
            for text, want in zip(TEXTS, btm_ids):
                got = tok.encode(text, add_special_tokens=False)
                self.check(got == want, f"tokenizer ({kind}, {type(tok).__name__}) encodes {text!r} as btm does"
                                        + ("" if got == want else f": {got} vs btm {want}"))
            self.check(tok.eos_token_id == 2 and tok.decode(btm_ids[0]) == TEXTS[0],
                       f"tokenizer ({kind}): eos id and decode")

    # -------------------------------------------------------------------------------- import
    def scale_weights(self, model):
        """Away from transformers' 0.02 init: logits and routing far from uniform."""
        with self.torch.no_grad():
            for name, p in model.named_parameters():
                if p.dim() == 2:
                    p.normal_(0.0, 0.12)
                else:
                    p.copy_(1.0 + 0.1 * self.torch.randn_like(p))

    def import_(self):
        sp = os.path.join(self.args.work, "export", "dense_gqa", "tokenizer.model")
        common = dict(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=520, max_position_embeddings=64, rope_theta=1000.0,
                      rms_norm_eps=1e-6, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)
        cases = [("llama", self.tf.LlamaConfig(**common), self.tf.LlamaForCausalLM, self.torch.float32),
                 ("llama_bf16", self.tf.LlamaConfig(**common), self.tf.LlamaForCausalLM, self.torch.bfloat16),
                 ("mixtral", self.tf.MixtralConfig(**common, num_local_experts=3, num_experts_per_tok=2,
                                                   sliding_window=None),
                  self.tf.MixtralForCausalLM, self.torch.float32)]
        for name, config, cls, dtype in cases:
            folder = os.path.join(self.args.work, "import", name)
            shutil.rmtree(folder, ignore_errors=True)
            model = cls(config)
            self.scale_weights(model)
            model = model.to(dtype)
            model.save_pretrained(folder, safe_serialization=True, max_shard_size="30KB")
            shutil.copy(sp, os.path.join(folder, "tokenizer.model"))
            h5 = os.path.join(self.args.work, "import", name + ".h5")
            run([self.args.btm, "import", folder, h5, "--context", "32"])
            ids = self.ids(config.vocab_size)
            # The saved weights in fp32 in a fresh model: .float() would keep the rotary
            # frequencies rounded to bf16 by .to(dtype).
            weights = {k: v.float() for k, v in model.state_dict().items()}
            config._attn_implementation = "eager"
            model = cls(config)
            model.load_state_dict(weights)
            model.eval()
            with self.torch.no_grad():
                hf = model(self.torch.tensor([ids])).logits[0].numpy()
            shards = len([f for f in os.listdir(folder) if f.endswith(".safetensors")])
            self.compare(f"import {name} ({shards} shards, {str(dtype).split('.')[-1]})", self.btm_logits(h5, ids), hf)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--btm", required=True)
    p.add_argument("--probe", required=True)
    p.add_argument("--venv", required=True)
    p.add_argument("--work", required=True)
    p.add_argument("--in-venv", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    args.venv = os.environ.get("BTM_HF_VENV") or args.venv
    if not args.in_venv:
        python = ensure_venv(args.venv)
        if python is None:
            return SKIP
        return subprocess.run([python, os.path.abspath(__file__), *sys.argv[1:], "--in-venv"]).returncode
    os.makedirs(args.work, exist_ok=True)
    checks = Checks(args)
    print(f"check_hf: torch {checks.torch.__version__}, transformers {checks.tf.__version__}", flush=True)
    checks.export()
    checks.import_()
    if checks.failures:
        print(f"check_hf: {len(checks.failures)} check(s) FAILED", flush=True)
        return 1
    print("check_hf: all checks passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
