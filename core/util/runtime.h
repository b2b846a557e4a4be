#pragma once
// Process-wide libtorch set-up: use every core, and report which BLAS does the matrix products
// (Debian's libtorch links the generic libblas.so.3; the alternative installed decides whether that is
// OpenBLAS or the 15–30× slower reference BLAS).

#include <string>

namespace cs {

struct RuntimeInfo {
    int threads = 1;          // libtorch intra-op threads
    std::string blas;         // e.g. "OpenBLAS 0.3.21 (OpenMP) Haswell MAX_THREADS=64" or "reference"
    std::string blasLibrary;  // the shared object that provides sgemm_ (from /proc/self/maps)
    std::string openblasCoretype; // $OPENBLAS_CORETYPE, empty when unset
};

// Sets libtorch's thread count to the number of available cores (or $CIRCUITSCOPE_THREADS).
// Idempotent; call once at start-up from each executable.
void initializeRuntime();

RuntimeInfo runtimeInfo();

// Hands memory that earlier work freed back to the system. The runtime keeps freed memory for reuse
// (initializeRuntime: the next Run needs the same again, and fresh pages cost the kernel's page faults),
// so after a long-prompt Run the process stays about as large as that Run's peak. Not called per
// analysis (that made every Run fault its memory in again); the benchmark calls it so that one
// measurement does not reuse another's memory.
void releaseFreedMemory();

} // namespace cs
