#pragma once
// A small seeded generator whose sequence is the same on every platform and standard library
// (std::uniform_int_distribution is implementation-defined, std::mt19937_64 is not).

#include <cstdint>
#include <random>
#include <vector>

namespace cs::train {

class Rng {
public:
    explicit Rng(std::uint64_t seed) : m_engine(seed) {}
    std::uint64_t next() { return m_engine(); }
    // Uniform in [0, n) for n ≥ 1 (the modulo bias is negligible for the small n used here).
    std::uint64_t below(std::uint64_t n) { return m_engine() % n; }
    template <typename T>
    const T& pick(const std::vector<T>& items) { return items[below(items.size())]; }

private:
    std::mt19937_64 m_engine;
};

} // namespace cs::train
