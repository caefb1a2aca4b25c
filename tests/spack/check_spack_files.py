"""Checks the Spack files without Spack (it cannot be installed everywhere): both
environments parse and ask for what the build needs (CMake 3.25 for the presets, Kokkos with
OpenMP, parallel HDF5; CUDA 12, cuDNN, NCCL for sm_90 in the CUDA one; no PyTorch), the
site example is a packages: block, and spack/repo's package.py loads against a minimal
stand-in for spack.package and gives the CMake options of its variants.
  check_spack_files.py SOURCE_DIR"""
import contextlib
import importlib.util
import os
import sys
import types

import yaml

src = sys.argv[1]
problems = []


def env_specs(path):
    with open(os.path.join(src, path)) as f:
        doc = yaml.safe_load(f)
    specs = doc["spack"]["specs"]
    if not all(isinstance(s, str) for s in specs):
        problems.append(f"{path}: specs must be plain strings")
    return [s.replace(" ", "") for s in specs]


def need(path, specs, wanted):
    for w in wanted:
        if not any(s.startswith(w.replace(" ", "")) for s in specs):
            problems.append(f"{path}: no spec '{w}'")


common = ["cmake@3.25:", "mpi", "hdf5@1.10:+mpi", "kokkos@3.4:+openmp~cuda", "tomlplusplus@3:", "sentencepiece",
          "openblas", "zlib-api", "pkgconfig", "googletest"]
cpu = env_specs("spack.yaml")
need("spack.yaml", cpu, common)
cuda = env_specs("spack/cuda/spack.yaml")
need("spack/cuda/spack.yaml", cuda, common + ["cuda@12:", "cudnn@9:", "nccl@2.18:+cudacuda_arch=90"])
for path, specs in (("spack.yaml", cpu), ("spack/cuda/spack.yaml", cuda)):
    if any("py-torch" in s for s in specs):
        problems.append(f"{path}: py-torch does not belong in the runtime environment")
with open(os.path.join(src, "spack/packages.yaml")) as f:
    site = yaml.safe_load(f)
for name in ("slurm", "openmpi", "cuda"):
    if not site["packages"][name]["externals"][0]["prefix"]:
        problems.append(f"spack/packages.yaml: {name} has no external prefix")

# A stand-in for spack.package: records the directives, evaluates cmake_args.
calls = []
fake = types.ModuleType("spack.package")


def directive(kind):
    return lambda *a, **k: calls.append((kind, a, k))


for kind in ("version", "variant", "depends_on", "conflicts"):
    setattr(fake, kind, directive(kind))
fake.when = lambda cond: contextlib.nullcontext()


class Spec:
    def __init__(self, text, arch="none"):
        self.text, self.variants = text, {"cuda_arch": types.SimpleNamespace(value=arch)}

    def satisfies(self, cond):
        return cond in self.text

    def __getitem__(self, name):
        return types.SimpleNamespace(prefix=f"/opt/{name}")


class CMakePackage:
    run_tests = False

    def define(self, name, value):
        return f"-D{name}={'ON' if value is True else 'OFF' if value is False else value}"

    def define_from_variant(self, name, variant):
        return self.define(name, self.spec.satisfies("+" + variant))


class CudaPackage:
    cuda_arch_values = ("70", "80", "90")


fake.CMakePackage, fake.CudaPackage = CMakePackage, CudaPackage
sys.modules["spack"] = types.ModuleType("spack")
sys.modules["spack.package"] = fake
spec = importlib.util.spec_from_file_location("btm_package", os.path.join(src, "spack/repo/packages/btm/package.py"))
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
deps = [a[0] for kind, a, k in calls if kind == "depends_on"]
for d in ("cmake@3.25:", "mpi", "hdf5@1.10: +mpi", "kokkos +openmp", "onednn", "cudnn@9:", "nccl@2.18: +cuda", "nccl cuda_arch=90"):
    if d not in deps:
        problems.append(f"package.py: no depends_on('{d}')")
if not any(kind == "variant" and a[0] == "openmp" for kind, a, k in calls):
    problems.append("package.py: no openmp variant")
pkg = mod.Btm()
pkg.spec = Spec("+openmp+onednn")
if pkg.cmake_args() != ["-DBTM_ENABLE_CUDA=OFF", "-DBTM_ENABLE_ONEDNN=ON", "-DBTM_ENABLE_TESTS=OFF"]:
    problems.append(f"package.py: cmake_args for ~cuda: {pkg.cmake_args()}")
pkg.spec = Spec("+cuda+openmp~onednn", "90")
if pkg.cmake_args() != ["-DBTM_ENABLE_CUDA=ON", "-DBTM_ENABLE_ONEDNN=OFF", "-DBTM_ENABLE_TESTS=OFF",
                        "-DCMAKE_CUDA_ARCHITECTURES=90"]:
    problems.append(f"package.py: cmake_args for +cuda: {pkg.cmake_args()}")
env = {}
pkg.setup_build_environment(types.SimpleNamespace(set=env.__setitem__))
if env != {"CUDNN_ROOT": "/opt/cudnn", "NCCL_ROOT": "/opt/nccl"}:
    problems.append(f"package.py: build environment for +cuda: {env}")
if not mod.Btm.git.startswith("file://") or not os.path.isdir(mod.Btm.git[len("file://"):] + "/spack/repo"):
    problems.append(f"package.py: git {mod.Btm.git} is not this checkout")

for p in problems:
    print("FAIL:", p)
print("spack files:", "ok" if not problems else f"{len(problems)} problem(s)")
sys.exit(1 if problems else 0)
