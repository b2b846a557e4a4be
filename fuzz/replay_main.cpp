// CTest fuzz_replay: every committed corpus entry and crash reproducer through its target's function
// (fuzz/corpus/<target>/*, fuzz/crashes/<target>/*), in the normal build, so a regression fails CI.
// Usage: fuzz_replay FUZZ_DIR

#include "fuzz/fuzz_targets.h"

#include <algorithm>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>

int main(int argc, char** argv)
{
    namespace fs = std::filesystem;
    if (argc != 2) {
        std::cerr << "usage: fuzz_replay FUZZ_DIR\n";
        return 2;
    }
    const fs::path root = argv[1];
    int failures = 0;
    for (const cs::fuzz::Target& target : cs::fuzz::targets()) {
        std::size_t inputs = 0;
        for (const char* kind : {"corpus", "crashes"}) {
            const fs::path dir = root / kind / target.name;
            std::error_code ec;
            if (!fs::is_directory(dir, ec))
                continue;
            std::vector<fs::path> files;
            for (const auto& e : fs::directory_iterator(dir))
                if (e.is_regular_file())
                    files.push_back(e.path());
            std::sort(files.begin(), files.end());
            for (const fs::path& f : files) {
                std::ifstream in(f, std::ios::binary);
                const std::string bytes(std::istreambuf_iterator<char>(in), {});
                ++inputs;
                try {
                    target.run(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
                } catch (const std::exception& e) {
                    std::cerr << "FAIL " << f.string() << ": " << e.what() << '\n';
                    ++failures;
                }
            }
        }
        std::cout << target.name << ": " << inputs << " inputs replayed\n";
        if (inputs == 0) {
            std::cerr << "FAIL " << target.name << ": no corpus under " << (root / "corpus" / target.name).string() << '\n';
            ++failures;
        }
    }
    return failures == 0 ? 0 : 1;
}
