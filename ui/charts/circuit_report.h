#pragma once
// The circuit as a document (product.md §4, issue 6): the pinned nodes in order, each with its note and
// the view the engine computed for it — as CSV (one row per pin) and as one PDF with a page per pin
// (name, note, metrics, write and read tokens as bar charts, the token-pair heatmap for attention heads
// and attention-autoencoder latents). Pure rendering: the views come in computed; nothing here touches
// the model. Needs a QApplication for the PDF (QT_QPA_PLATFORM=offscreen works without a display).

#include "ui/engine/view_types.h"

#include <QByteArray>
#include <QString>
#include <QVector>

#include <optional>
#include <string>

namespace cs::ui {

struct CircuitPage {
    QString node;                  // the pin's node name, as pinned
    QString note;
    std::optional<NodeView> view;  // absent when the engine could not compute it: `error` says why
    QString error;
};

struct CircuitReport {
    QString model;       // the model's name, for the headers
    QString prompt;
    QString objective;   // e.g. "logit(·Mary) − logit(·John)"; empty without a target
    QVector<CircuitPage> pages;
};

// The first `perSide` entries of the top and bottom lists (charts with room for fewer bars).
TopTokenList firstTokens(const TopTokenList& list, int perSide);

// firstTokens() titled for a chart that sits under a header naming the node: "Q-read tokens (query
// side)" becomes "Q-read tokens".
TopTokenList chartTokens(const TopTokenList& list, int perSide);

// The pair map a page or slide shows for a node: a head's attention probabilities, an attention
// latent's pair attribution; null for other nodes or when there is none.
const Heatmap* mainPairMap(const NodeView& view);

// RFC 4180 CSV with '#' comments (model, prompt, objective, metric "circuit", pins), then the header
// order,node,note,activation,write_magnitude,direct_effect,total_effect,top_write_tokens,error
// and one row per pin: full-precision numbers, effects empty without a target, the top write tokens
// (in context, raw strings with their spaces) joined by ", ", and the engine's error for a pin it could
// not compute (its numbers then empty).
std::string circuitCsv(const CircuitReport& report);

// The PDF: A4 landscape, exactly one page per pin, the CSV attached. Empty with *error set when there
// are no pins or no QApplication.
QByteArray circuitPdf(const CircuitReport& report, QString* error = nullptr);

// Writes circuitCsv() or circuitPdf() (by the suffix, .csv or .pdf) atomically through QSaveFile.
// False with a one-line *error on an unknown suffix, no pins or a write error; no file is left then.
bool writeCircuit(const CircuitReport& report, const QString& path, QString* error = nullptr);

} // namespace cs::ui
