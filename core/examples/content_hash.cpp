#include "core/examples/content_hash.h"

#include "core/util/errors.h"

#include <QCryptographicHash>
#include <QFile>

#include <algorithm>

namespace cs {

struct ContentHasher::Impl {
    QCryptographicHash hash{QCryptographicHash::Sha256};
};

ContentHasher::ContentHasher() : m_impl(new Impl) {}
ContentHasher::~ContentHasher() { delete m_impl; }

void ContentHasher::add(const void* data, std::size_t bytes)
{
    // QCryptographicHash takes qsizetype chunks; feed large buffers piecewise.
    const char* p = static_cast<const char*>(data);
    while (bytes > 0) {
        const std::size_t n = std::min<std::size_t>(bytes, std::size_t(1) << 30);
        m_impl->hash.addData(QByteArrayView(p, static_cast<qsizetype>(n)));
        p += n;
        bytes -= n;
    }
}

void ContentHasher::add(const std::string& text)
{
    const std::uint64_t n = text.size();
    add(&n, sizeof n);
    add(text.data(), text.size());
}

void ContentHasher::addFile(const std::filesystem::path& file)
{
    QFile f(QString::fromStdString(file.string()));
    if (!f.open(QIODevice::ReadOnly))
        throwInputError(file, "cannot be read (" + f.errorString().toStdString() + ")");
    add(file.filename().string());
    const std::uint64_t size = static_cast<std::uint64_t>(f.size());
    add(&size, sizeof size);
    if (!m_impl->hash.addData(&f))
        throwInputError(file, "cannot be read (" + f.errorString().toStdString() + ")");
}

void ContentHasher::addFolder(const std::filesystem::path& dir)
{
    std::vector<std::filesystem::path> files;
    std::error_code ec;
    for (auto it = std::filesystem::recursive_directory_iterator(dir, ec); !ec && it != std::filesystem::recursive_directory_iterator();
         it.increment(ec)) {
        if (it->is_regular_file())
            files.push_back(it->path());
    }
    if (ec)
        throwInputError(dir, "cannot be listed (" + ec.message() + ")");
    std::sort(files.begin(), files.end(), [&](const auto& a, const auto& b) {
        return a.lexically_relative(dir).string() < b.lexically_relative(dir).string();
    });
    for (const auto& f : files) {
        add(f.lexically_relative(dir).string());
        addFile(f);
    }
}

std::string ContentHasher::hex()
{
    return m_impl->hash.result().toHex().toStdString();
}

std::string sha256Hex(const void* data, std::size_t bytes)
{
    ContentHasher h;
    h.add(data, bytes);
    return h.hex();
}

std::string modelContentHash(const Gpt2Model& model)
{
    ContentHasher h;
    h.add(std::string("model"));
    h.addFile(model.directory / "config.json");
    h.addFile(model.weightsFile);
    // The tokenizer decides the token stream, so it is part of what was indexed.
    for (const char* name : {"vocab.json", "merges.txt", "tokenizer.json"}) {
        const auto p = model.directory / name;
        if (std::filesystem::is_regular_file(p))
            h.addFile(p);
    }
    return h.hex();
}

std::string saeContentHash(const BoundSae& sae)
{
    ContentHasher h;
    h.add(std::string(saeLocationName(sae.location)));
    h.add(&sae.layer, sizeof sae.layer);
    const auto& source = sae.sae->source;
    if (std::filesystem::is_directory(source))
        h.addFolder(source);
    else
        h.addFile(source);
    return h.hex();
}

} // namespace cs
