#include "core/util/runtime.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <cstdlib>
#include <dlfcn.h>
#include <filesystem>
#include <fstream>
#include <malloc.h>
#include <mutex>
#include <thread>

namespace cs {

void releaseFreedMemory()
{
    malloc_trim(0);
}

void initializeRuntime()
{
    static std::once_flag once;
    std::call_once(once, [] {
        int threads = static_cast<int>(std::thread::hardware_concurrency());
        if (const char* env = std::getenv("CIRCUITSCOPE_THREADS")) {
            const int requested = std::atoi(env);
            if (requested > 0)
                threads = requested;
        }
        if (threads < 1)
            threads = 1;
        at::set_num_threads(threads);
    });
}

namespace {

// The library in our address space that contains `symbol`, found by dladdr.
std::string libraryOf(const char* symbol)
{
    void* addr = dlsym(RTLD_DEFAULT, symbol);
    if (!addr)
        return {};
    Dl_info dl {};
    if (dladdr(addr, &dl) == 0 || !dl.dli_fname)
        return {};
    std::error_code ec;
    const auto resolved = std::filesystem::canonical(dl.dli_fname, ec);
    return ec ? std::string(dl.dli_fname) : resolved.string();
}

} // namespace

RuntimeInfo runtimeInfo()
{
    RuntimeInfo info;
    info.threads = at::get_num_threads();
    // Make sure the BLAS is loaded (libtorch loads it lazily on first use).
    (void)at::mm(at::ones({2, 2}), at::ones({2, 2}));
    info.blasLibrary = libraryOf("sgemm_");
    using ConfigFn = char* (*)();
    if (auto cfg = reinterpret_cast<ConfigFn>(dlsym(RTLD_DEFAULT, "openblas_get_config"))) {
        info.blas = cfg(); // "OpenBLAS 0.3.21 ... USE_OPENMP <core> MAX_THREADS=64"
        using CoreFn = char* (*)();
        if (auto core = reinterpret_cast<CoreFn>(dlsym(RTLD_DEFAULT, "openblas_get_corename")))
            info.blas += std::string(" core=") + core();
    } else if (info.blasLibrary.find("blis") != std::string::npos) {
        info.blas = "BLIS";
    } else if (info.blasLibrary.find("mkl") != std::string::npos) {
        info.blas = "MKL";
    } else {
        info.blas = "reference (slow: install libopenblas0-openmp)";
    }
    if (const char* ct = std::getenv("OPENBLAS_CORETYPE"))
        info.openblasCoretype = ct;
    return info;
}

} // namespace cs
