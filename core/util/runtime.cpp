#include "core/util/runtime.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/CPUAllocator.h>

#include <cstdlib>
#include <dlfcn.h>
#include <filesystem>
#include <fstream>
#include <malloc.h>
#include <mutex>
#include <new>
#include <thread>
#include <unordered_map>

namespace cs {

namespace {

// libtorch's CPU allocator with reuse of large blocks. A long prompt's pass makes, layer after layer,
// tensors of the same few sizes of tens of MB (the [H, n, n] scores, probabilities and their
// gradients are 50 MB each at 1,024 tokens); glibc serves each from fresh mmapped pages and unmaps it
// when freed, so every one is paid again in page faults and zeroing by the kernel — more than the
// softmax that fills it. Here a freed block of at least kMinBytes waits, under its exact size, for the
// next request of that size (up to kMaxCachedBytes in all); releaseFreedMemory() hands them back.
class ReusingCpuAllocator final : public c10::Allocator {
public:
    static constexpr std::size_t kMinBytes = std::size_t(4) << 20;
    static constexpr std::size_t kMaxCachedBytes = std::size_t(128) << 20;

    c10::DataPtr allocate(std::size_t bytes) const override
    {
        void* p = nullptr;
        if (bytes >= kMinBytes) {
            std::lock_guard lock(mutex_);
            const auto it = free_.find(bytes);
            if (it != free_.end()) {
                p = it->second;
                free_.erase(it);
                cachedBytes_ -= bytes;
            }
        }
        if (!p && bytes > 0) {
            // 64-byte alignment, as libtorch's own CPU allocator gives.
            if (posix_memalign(&p, 64, bytes) != 0)
                throw std::bad_alloc();
            if (bytes >= kMinBytes) {
                std::lock_guard lock(mutex_);
                sizes_[p] = bytes;
            }
        }
        return {p, p, &release, c10::Device(c10::DeviceType::CPU)};
    }

    c10::DeleterFnPtr raw_deleter() const override { return &release; }

    void trim()
    {
        std::lock_guard lock(mutex_);
        for (const auto& [bytes, p] : free_) {
            sizes_.erase(p);
            std::free(p);
        }
        free_.clear();
        cachedBytes_ = 0;
    }

    static ReusingCpuAllocator& instance()
    {
        static ReusingCpuAllocator* allocator = new ReusingCpuAllocator; // never destroyed: tensors may outlive statics
        return *allocator;
    }

private:
    static void release(void* p)
    {
        if (!p)
            return;
        ReusingCpuAllocator& self = instance();
        {
            std::lock_guard lock(self.mutex_);
            const auto it = self.sizes_.find(p);
            if (it != self.sizes_.end()) {
                if (self.cachedBytes_ + it->second <= kMaxCachedBytes) {
                    self.free_.emplace(it->second, p);
                    self.cachedBytes_ += it->second;
                    return;
                }
                self.sizes_.erase(it);
            }
        }
        std::free(p);
    }

    mutable std::mutex mutex_;
    mutable std::unordered_multimap<std::size_t, void*> free_; // size → blocks waiting for reuse
    mutable std::unordered_map<void*, std::size_t> sizes_;      // every large block handed out or waiting
    mutable std::size_t cachedBytes_ = 0;
};

} // namespace

void releaseFreedMemory()
{
    ReusingCpuAllocator::instance().trim();
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
        // Keep freed memory for the next Run instead of handing it back to the system. A Run allocates
        // its record and gradients afresh (hundreds of MB at GPT-2 XL's width or at 1,024 tokens), and
        // memory the system took back comes again as fresh pages that the kernel faults in and zeroes
        // one by one. Handing it back before each analysis (as until 2026-12-04) made Runs 16–24 % slower
        // at 64–1,024 tokens on GPT-2 small and 13 % on GPT-2 XL's shape, for a peak 7 % lower. glibc's defaults adapt the thresholds
        // and trim the heap's top whenever a few MB there are free, which is every time a Run ends.
        // Blocks above 32 MB (glibc's largest threshold) stay mapped per block; the allocator above
        // keeps the large ones.
        mallopt(M_MMAP_THRESHOLD, 32 << 20);
        mallopt(M_TRIM_THRESHOLD, 1 << 30);
        c10::SetCPUAllocator(&ReusingCpuAllocator::instance(), /*priority=*/1);
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
