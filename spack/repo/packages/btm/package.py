# Spack package for btm. Use it from this checkout:
#   spack repo add /path/to/btm/spack/repo
#   spack install btm                       # CPU: Kokkos with OpenMP threads
#   spack install btm +cuda cuda_arch=90    # plus the cuda backend (cuBLASLt, cuDNN, NCCL)
# `main` is this checkout's git repository (the folder four levels up), so no download is
# needed; `spack develop btm@main` builds the working tree instead.
import os

from spack.package import *


class Btm(CMakePackage, CudaPackage):
    """Trains expert language models embarrassingly parallel with MPI: Branch-Train-Merge,
    C-BTM (clustered experts) and BTX (experts merged into a mixture of experts)."""

    git = "file://" + os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))

    version("main", branch="main")

    variant("openmp", default=True, description="Host kernels threaded by Kokkos' OpenMP backend")
    variant("onednn", default=True, description="bf16 GEMMs on the cpu backend (train.precision = bf16) via oneDNN")

    depends_on("c", type="build")
    depends_on("cxx", type="build")
    depends_on("cmake@3.25:", type="build")  # CMakePresets.json version 6
    depends_on("pkgconfig", type="build")  # SentencePiece ships only a .pc file
    depends_on("mpi")
    depends_on("hdf5@1.10: +mpi")
    # Kokkos runs the host kernels only; the cuda backend has its own kernels.
    depends_on("kokkos@3.4: ~cuda")
    depends_on("kokkos +openmp", when="+openmp")
    depends_on("kokkos ~openmp", when="~openmp")
    depends_on("tomlplusplus@3:")
    depends_on("sentencepiece")
    depends_on("blas")  # with cblas.h (OpenBLAS)
    depends_on("onednn", when="+onednn")
    depends_on("zlib-api")
    depends_on("googletest", type="test")

    with when("+cuda"):
        depends_on("cuda@12:")  # nvcc >= 12 for C++20
        depends_on("cudnn@9:")
        depends_on("nccl@2.18: +cuda")
        for arch in CudaPackage.cuda_arch_values:
            depends_on(f"nccl cuda_arch={arch}", when=f"cuda_arch={arch}")
    conflicts("cuda_arch=none", when="+cuda", msg="the cuda backend needs a cuda_arch (H100/H200: cuda_arch=90)")
    conflicts("%gcc@:10", msg="btm is C++20: GCC 11 or newer")

    def cmake_args(self):
        spec = self.spec
        args = [
            self.define_from_variant("BTM_ENABLE_CUDA", "cuda"),
            self.define_from_variant("BTM_ENABLE_ONEDNN", "onednn"),
            self.define("BTM_ENABLE_TESTS", self.run_tests),
        ]
        if spec.satisfies("+cuda"):
            args.append(self.define("CMAKE_CUDA_ARCHITECTURES", spec.variants["cuda_arch"].value))
        return args

    def setup_build_environment(self, env):
        # cmake/BtmDependencies.cmake looks for cuDNN and NCCL under these prefixes first.
        if self.spec.satisfies("+cuda"):
            env.set("CUDNN_ROOT", self.spec["cudnn"].prefix)
            env.set("NCCL_ROOT", self.spec["nccl"].prefix)
