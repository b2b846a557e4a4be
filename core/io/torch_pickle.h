#pragma once
// Safe reader for PyTorch zip checkpoints (what torch.save writes since torch 1.6: pytorch_model.bin,
// sparse-autoencoder .pt files).
//
// libtorch's own torch::pickle_load cannot read an OrderedDict, a one-entry dict or nested dicts, which
// is exactly what state_dict() files hold, and Python's unpickler executes whatever a file names. This
// reader runs its own small pickle interpreter that only *recognises* a fixed set of globals
// (collections.OrderedDict, torch._utils._rebuild_tensor[_v2], torch._utils._rebuild_parameter, the
// torch.*Storage classes, torch dtypes) and refuses every other one; nothing a file names is executed.
// Every size in the file is checked against the bytes actually present before anything is allocated,
// so a corrupt or hostile file ends in a one-line cs::InputError naming the file, never a crash.
//
// Not supported (refused with an InputError): the legacy non-zip torch.save format, big-endian
// archives, TorchScript archives (their pickles name torch.jit / __torch__ classes), Python objects
// other than the containers below.

#include <ATen/ATen.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace cs {

// A value from a checkpoint pickle: only what checkpoints contain.
// None -> monostate; tuples and lists -> List; dict and OrderedDict -> Dict (insertion order kept,
// attributes an OrderedDict carries, such as state_dict()'s _metadata, are dropped); a torch dtype
// global such as torch.float32 -> the string "torch.float32". Tensors are CPU tensors; tensors that
// share a storage in the file share it here too.
struct TorchValue {
    using List = std::vector<TorchValue>;
    using Dict = std::vector<std::pair<TorchValue, TorchValue>>;
    std::variant<std::monostate, bool, int64_t, double, std::string, at::Tensor, List, Dict> value;

    bool isNone() const { return std::holds_alternative<std::monostate>(value); }
    bool isBool() const { return std::holds_alternative<bool>(value); }
    bool isInt() const { return std::holds_alternative<int64_t>(value); }
    bool isDouble() const { return std::holds_alternative<double>(value); }
    bool isString() const { return std::holds_alternative<std::string>(value); }
    bool isTensor() const { return std::holds_alternative<at::Tensor>(value); }
    bool isList() const { return std::holds_alternative<List>(value); }
    bool isDict() const { return std::holds_alternative<Dict>(value); }

    // The accessors throw cs::InputError ("expected an int, found a string") on a type mismatch, since
    // the value came from a user's file; callers that know the file should prefix its name.
    bool asBool() const;
    int64_t asInt() const;
    double asDouble() const;  // an int converts
    const std::string& asString() const;
    const at::Tensor& asTensor() const;
    const List& asList() const;
    const Dict& asDict() const;

    // For a dict: the value under the string key, or nullptr (also when this is not a dict).
    const TorchValue* find(std::string_view key) const;

    // "None", "bool", "int", "float", "str", "tensor", "list", "dict".
    const char* typeName() const;
};

// Reads a torch.save zip archive and returns the root object of its pickle (archive/data.pkl).
// Throws cs::InputError ("<path>: <problem>") for a missing, corrupt, legacy-format or hostile file.
TorchValue loadTorchFile(const std::filesystem::path& path);

// A checkpoint whose root is a dict or OrderedDict of tensors (a state_dict, an SAE checkpoint).
struct TorchStateDict {
    // In file order. A nested dict that holds tensors is flattened: {"a": {"b": t}} gives "a.b".
    std::vector<std::pair<std::string, at::Tensor>> tensors;
    // Everything else, by top-level key: strings, numbers, lists, dicts without tensors. For a nested
    // dict that mixes tensors and other values, the entry holds what is left after the tensors moved out.
    std::map<std::string, TorchValue> extras;

    const at::Tensor* find(std::string_view key) const;
};

// loadTorchFile, then checks that the root is a dict (string or int keys) and splits it as above.
TorchStateDict loadTorchStateDict(const std::filesystem::path& path);

} // namespace cs
