# Finds every dependency of btm. Included once from the top-level CMakeLists.txt.

find_package(MPI REQUIRED COMPONENTS C CXX)

# Parallel HDF5 (Debian: libhdf5-openmpi-dev). FindHDF5 needs the C language enabled.
set(HDF5_PREFER_PARALLEL ON)
find_package(HDF5 REQUIRED COMPONENTS C)
if(NOT HDF5_IS_PARALLEL)
  message(FATAL_ERROR "btm needs a parallel (MPI) build of HDF5; found a serial one at ${HDF5_INCLUDE_DIRS}. "
                      "On Debian: apt-get install libhdf5-openmpi-dev")
endif()
add_library(btm_hdf5 INTERFACE)
target_include_directories(btm_hdf5 SYSTEM INTERFACE ${HDF5_INCLUDE_DIRS})
target_link_libraries(btm_hdf5 INTERFACE ${HDF5_C_LIBRARIES})
target_compile_definitions(btm_hdf5 INTERFACE ${HDF5_DEFINITIONS})

# Kokkos. Debian's 3.4.1 ships a CMake config whose include directory is wrong; derive the
# real one from Kokkos_DIR (<prefix>/lib/<triplet>/cmake/Kokkos) so that the same code
# works with Debian's packages, the GPU kit and a Spack-built Kokkos.
find_package(Kokkos REQUIRED)
get_filename_component(BTM_KOKKOS_PREFIX "${Kokkos_DIR}/../../../.." ABSOLUTE)
if(EXISTS "${BTM_KOKKOS_PREFIX}/include/trilinos/Kokkos_Core.hpp")
  set_target_properties(Kokkos::kokkos PROPERTIES
    INTERFACE_INCLUDE_DIRECTORIES "${BTM_KOKKOS_PREFIX}/include/trilinos")
endif()

find_package(tomlplusplus REQUIRED)
find_package(ZLIB REQUIRED)  # .jsonl.gz corpora

# BLAS with the CBLAS interface (OpenBLAS on Debian and in spack.yaml).
find_package(BLAS REQUIRED)
find_path(BTM_CBLAS_INCLUDE_DIR cblas.h
  HINTS ${BLAS_ROOT} ENV OPENBLAS_ROOT ENV OPENBLAS_DIR
  PATH_SUFFIXES include include/openblas include/x86_64-linux-gnu include/aarch64-linux-gnu)
if(NOT BTM_CBLAS_INCLUDE_DIR)
  message(FATAL_ERROR "cblas.h not found; install OpenBLAS (Debian: libopenblas-dev)")
endif()
add_library(btm_blas INTERFACE)
target_include_directories(btm_blas SYSTEM INTERFACE ${BTM_CBLAS_INCLUDE_DIR})
target_link_libraries(btm_blas INTERFACE ${BLAS_LIBRARIES})
# LAPACK (the clustering's SVD: dgelqf, dorglq, dsyevd); OpenBLAS carries it on Debian.
find_package(LAPACK REQUIRED)
target_link_libraries(btm_blas INTERFACE ${LAPACK_LIBRARIES})
include(CheckFunctionExists)
set(CMAKE_REQUIRED_LIBRARIES ${BLAS_LIBRARIES})
check_function_exists(openblas_set_num_threads BTM_HAVE_OPENBLAS_THREADS)
unset(CMAKE_REQUIRED_LIBRARIES)
if(BTM_HAVE_OPENBLAS_THREADS)
  target_compile_definitions(btm_blas INTERFACE BTM_HAVE_OPENBLAS_THREADS=1)
endif()

# oneDNN (Debian: libdnnl-dev; Spack: onednn), optional: the cpu backend's bf16 GEMMs
# (train.precision = "bf16", AVX512-BF16 / AMX chosen by oneDNN at run time). Without it
# btm builds and trains in fp32, and refuses a bf16 deck with a message naming the package.
option(BTM_ENABLE_ONEDNN "Use oneDNN for bf16 GEMMs on the cpu backend when it is found" ON)
if(BTM_ENABLE_ONEDNN)
  find_package(dnnl CONFIG QUIET)
endif()
if(TARGET DNNL::dnnl)
  message(STATUS "oneDNN ${dnnl_VERSION}: cpu backend bf16 GEMMs enabled")
  set(BTM_HAVE_ONEDNN ON)
else()
  message(STATUS "oneDNN not found (Debian: apt-get install libdnnl-dev; Spack: onednn): "
                 "the cpu backend trains in fp32 only (train.precision = \"bf16\" is refused)")
  set(BTM_HAVE_ONEDNN OFF)
endif()
# OpenMP sets oneDNN's threads (it uses the OpenMP runtime) from run.blas_threads.
find_package(OpenMP COMPONENTS CXX)

# SentencePiece ships only a pkg-config file.
find_package(PkgConfig REQUIRED)
pkg_check_modules(SENTENCEPIECE REQUIRED IMPORTED_TARGET sentencepiece)

if(BTM_ENABLE_TESTS)
  find_package(GTest REQUIRED)
endif()

if(BTM_ENABLE_CUDA)
  # CMake < 3.26 knows no C++20 flag for nvcc, so CMAKE_CUDA_STANDARD 20 fails to generate;
  # nvcc >= 12 accepts -std=c++20.
  if(CMAKE_CUDA_COMPILER_ID STREQUAL "NVIDIA" AND NOT DEFINED CMAKE_CUDA20_STANDARD_COMPILE_OPTION)
    if(CMAKE_CUDA_COMPILER_VERSION VERSION_LESS 12.0)
      message(FATAL_ERROR "nvcc ${CMAKE_CUDA_COMPILER_VERSION} cannot compile C++20; the cuda backend needs CUDA >= 12")
    endif()
    set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION "-std=c++20")
    set(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION "-std=c++20")
  endif()
  find_package(CUDAToolkit REQUIRED)
  # cuDNN and NCCL: CUDNN_ROOT / NCCL_ROOT (install prefixes) first, then the CUDA toolkit,
  # then the pip wheels (nvidia-cudnn-cu*, nvidia-nccl-cu*: <site-packages>/nvidia/{cudnn,nccl}
  # with include/ and lib/) of the python3 on PATH. The wheels ship only the versioned
  # libcudnn.so.9 / libnccl.so.2, hence the second names.
  set(btm_pip_cudnn "")
  set(btm_pip_nccl "")
  find_program(BTM_PYTHON3 python3)
  if(BTM_PYTHON3)
    foreach(pkg cudnn nccl)
      execute_process(COMMAND ${BTM_PYTHON3} -c "import nvidia.${pkg} as m; print(list(m.__path__)[0])"
                      OUTPUT_VARIABLE btm_pip_${pkg} OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
    endforeach()
  endif()
  find_library(BTM_CUDNN_LIBRARY NAMES cudnn libcudnn.so.9
    HINTS ENV CUDNN_ROOT ENV CUDNN_PATH ${CUDAToolkit_LIBRARY_DIR} ${btm_pip_cudnn} PATH_SUFFIXES lib lib64)
  find_path(BTM_CUDNN_INCLUDE_DIR cudnn.h
    HINTS ENV CUDNN_ROOT ENV CUDNN_PATH ${CUDAToolkit_INCLUDE_DIRS} ${btm_pip_cudnn} PATH_SUFFIXES include)
  find_library(BTM_NCCL_LIBRARY NAMES nccl libnccl.so.2
    HINTS ENV NCCL_ROOT ENV NCCL_HOME ${CUDAToolkit_LIBRARY_DIR} ${btm_pip_nccl} PATH_SUFFIXES lib lib64)
  find_path(BTM_NCCL_INCLUDE_DIR nccl.h
    HINTS ENV NCCL_ROOT ENV NCCL_HOME ${CUDAToolkit_INCLUDE_DIRS} ${btm_pip_nccl} PATH_SUFFIXES include)
  foreach(v BTM_CUDNN_LIBRARY BTM_CUDNN_INCLUDE_DIR BTM_NCCL_LIBRARY BTM_NCCL_INCLUDE_DIR)
    if(NOT ${v})
      message(FATAL_ERROR "${v} not found: the cuda backend needs cuDNN 9 and NCCL "
                          "(set CUDNN_ROOT / NCCL_ROOT to their install prefixes, or install the "
                          "nvidia-cudnn-cu* / nvidia-nccl-cu* wheels into the python3 on PATH)")
    endif()
  endforeach()
  message(STATUS "cuDNN: ${BTM_CUDNN_LIBRARY} (headers ${BTM_CUDNN_INCLUDE_DIR}); "
                 "NCCL: ${BTM_NCCL_LIBRARY} (headers ${BTM_NCCL_INCLUDE_DIR})")
  # The graph API the cuda backend builds its attention on is cuDNN 9's.
  file(STRINGS "${BTM_CUDNN_INCLUDE_DIR}/cudnn_version.h" btm_cudnn_major REGEX "^#define CUDNN_MAJOR [0-9]+")
  string(REGEX REPLACE "^#define CUDNN_MAJOR ([0-9]+)" "\\1" btm_cudnn_major "${btm_cudnn_major}")
  if(NOT btm_cudnn_major OR btm_cudnn_major LESS 9)
    message(FATAL_ERROR "cuDNN at ${BTM_CUDNN_INCLUDE_DIR} is version ${btm_cudnn_major}; the cuda backend needs cuDNN 9")
  endif()
  add_library(btm_cudnn INTERFACE)
  target_include_directories(btm_cudnn SYSTEM INTERFACE ${BTM_CUDNN_INCLUDE_DIR})
  target_link_libraries(btm_cudnn INTERFACE ${BTM_CUDNN_LIBRARY})
  add_library(btm_nccl INTERFACE)
  target_include_directories(btm_nccl SYSTEM INTERFACE ${BTM_NCCL_INCLUDE_DIR})
  target_link_libraries(btm_nccl INTERFACE ${BTM_NCCL_LIBRARY})
endif()
