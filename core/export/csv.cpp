#include "core/export/csv.h"

#include <charconv>
#include <cmath>

namespace cs {

std::string CsvWriter::field(const std::string& value)
{
    if (value.find_first_of(",\"\r\n") == std::string::npos)
        return value;
    std::string out = "\"";
    for (char c : value) {
        if (c == '"')
            out += '"';
        out += c;
    }
    return out + '"';
}

std::string CsvWriter::number(double value)
{
    if (std::isnan(value))
        return "";
    char buf[64];
    const auto [ptr, ec] = std::to_chars(buf, buf + sizeof buf, value);
    return ec == std::errc() ? std::string(buf, ptr) : std::string();
}

void CsvWriter::comment(const std::string& key, const std::string& value)
{
    std::string v = value;
    for (char& c : v) {
        if (c == '\n' || c == '\r')
            c = ' ';
    }
    m_text += "# " + key + ": " + v + "\r\n";
}

void CsvWriter::row(const std::vector<std::string>& fields)
{
    for (std::size_t i = 0; i < fields.size(); ++i) {
        if (i)
            m_text += ',';
        m_text += field(fields[i]);
    }
    m_text += "\r\n";
}

std::vector<std::vector<std::string>> parseCsv(const std::string& text, std::vector<std::pair<std::string, std::string>>* comments)
{
    std::vector<std::vector<std::string>> rows;
    std::size_t i = 0;
    // Leading comment lines.
    while (i < text.size() && text[i] == '#') {
        const std::size_t end = text.find('\n', i);
        std::string line = text.substr(i, end == std::string::npos ? std::string::npos : end - i);
        if (!line.empty() && line.back() == '\r')
            line.pop_back();
        if (comments) {
            const std::size_t colon = line.find(": ");
            if (line.size() > 2 && colon != std::string::npos)
                comments->emplace_back(line.substr(2, colon - 2), line.substr(colon + 2));
        }
        i = end == std::string::npos ? text.size() : end + 1;
    }
    std::vector<std::string> row;
    std::string field;
    bool quoted = false, any = false;
    for (; i < text.size(); ++i) {
        const char c = text[i];
        any = true;
        if (quoted) {
            if (c == '"') {
                if (i + 1 < text.size() && text[i + 1] == '"') {
                    field += '"';
                    ++i;
                } else {
                    quoted = false;
                }
            } else {
                field += c;
            }
        } else if (c == '"') {
            quoted = true;
        } else if (c == ',') {
            row.push_back(std::move(field));
            field.clear();
        } else if (c == '\r' || c == '\n') {
            if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n')
                ++i;
            row.push_back(std::move(field));
            field.clear();
            rows.push_back(std::move(row));
            row.clear();
            any = false;
        } else {
            field += c;
        }
    }
    if (any) {
        row.push_back(std::move(field));
        rows.push_back(std::move(row));
    }
    return rows;
}

} // namespace cs
