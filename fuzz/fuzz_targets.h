#pragma once
// The fuzz targets (issue 13): one function per parser, each feeding arbitrary bytes to the real library
// code. libFuzzer drives them in the fuzz build (fuzz_main.cpp, clang); the test suite replays the
// committed corpus and every fixed crash through the same functions in the normal build
// (replay_main.cpp, CTest fuzz_replay).
//
// A target returns normally when the input is handled: parsed, or refused with cs::InputError (the
// one-line user error). Anything else escaping — another exception, a failed in-target check
// (std::logic_error "fuzz: ...") — or a crash is a bug.

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

namespace cs::fuzz {

struct Target {
    const char* name;
    void (*run)(const std::uint8_t* data, std::size_t size);
};

// safetensors, torch_pickle, hf_config, tokenizer, saelens, session, specs.
const std::vector<Target>& targets();
const Target* findTarget(std::string_view name);

} // namespace cs::fuzz
