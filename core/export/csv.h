#pragma once
// CSV as product.md §4 wants it: RFC 4180 (fields with a comma, quote, CR or LF are quoted, quotes
// doubled, lines end with CRLF), UTF-8, and `#` comment lines first naming model, prompt, node and
// metric so a table can be traced back. Tokens keep their leading spaces.

#include <string>
#include <utility>
#include <vector>

namespace cs {

class CsvWriter {
public:
    // A comment line "# key: value" (newlines in value become spaces so the comment stays one line).
    void comment(const std::string& key, const std::string& value);
    void row(const std::vector<std::string>& fields);
    const std::string& text() const { return m_text; }

    static std::string field(const std::string& value);
    // Shortest text that reads back to the same double ("%.9g" is not enough for round trips).
    static std::string number(double value);

private:
    std::string m_text;
};

// Parses CSV written by CsvWriter (or any RFC 4180 text): skips `#` comment lines at the start,
// returns rows of fields. Used by tests and by anything that reads exports back.
std::vector<std::vector<std::string>> parseCsv(const std::string& text,
                                               std::vector<std::pair<std::string, std::string>>* comments = nullptr);

} // namespace cs
