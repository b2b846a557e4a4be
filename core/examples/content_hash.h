#pragma once
// Content hashes for the examples index's cache key: what was indexed (model weights, config and
// tokenizer; autoencoder files; corpus) is named by SHA-256 of its bytes, never by a path or a date,
// so that a changed byte invalidates the index.

#include "core/model/gpt2_model.h"
#include "core/model/sae_set.h"

#include <QByteArray>

#include <filesystem>
#include <string>
#include <vector>

namespace cs {

// Incremental SHA-256 with helpers for files and folders; hex() ends it.
class ContentHasher {
public:
    ContentHasher();
    ~ContentHasher();
    ContentHasher(const ContentHasher&) = delete;
    ContentHasher& operator=(const ContentHasher&) = delete;

    void add(const void* data, std::size_t bytes);
    void add(const std::string& text); // length-prefixed, so that ("ab","c") ≠ ("a","bc")
    // The file's name (not its folder), its size and its bytes; InputError when it cannot be read.
    void addFile(const std::filesystem::path& file);
    // Every regular file under `dir`, in byte order of their relative paths, each as addFile with its
    // relative path.
    void addFolder(const std::filesystem::path& dir);
    std::string hex();

private:
    struct Impl;
    Impl* m_impl;
};

std::string sha256Hex(const void* data, std::size_t bytes);

// config.json, the weights file and the tokenizer files of a model directory.
std::string modelContentHash(const Gpt2Model& model);
// One autoencoder's files (a .pt file or a SAELens folder) plus where it is bound (location, layer).
std::string saeContentHash(const BoundSae& sae);

} // namespace cs
