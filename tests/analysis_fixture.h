#pragma once
// The tiny fixture model with the fixture autoencoders attached at every kind of location, shared by
// the analysis tests. Layer 0: resid_delta_attn.relu as an MLP-output SAE (resid_delta_mlp), the TopK
// SAE (normalized, D2) on the attention output, resid_delta_attn.relu on resid_post_mlp. Layer 1: the
// mlp_post_act ReLU SAE, resid_delta_attn.relu on the attention output, the TopK SAE on resid_pre.

#include "core/analysis/converters.h"
#include "core/model/forward.h"
#include "core/model/prompt.h"
#include "test_support.h"

#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>

namespace cs::test {

struct AnalysisFixture {
    std::shared_ptr<const Gpt2Model> model;
    SaeSet saes;

    AnalysisFixture()
    {
        model = loadHfGpt2(dataDir() / "tiny-gpt2");
        const auto sae = [](const char* file) {
            return std::make_shared<const SparseAutoencoder>(loadSae(dataDir() / "sae" / file));
        };
        const auto& c = model->config;
        saes.add(bindSae(sae("resid_delta_attn.relu.pt"), c, SaeRole::Mlp, 0));
        saes.add(bindSae(sae("resid_delta_attn.topk8.pt"), c, SaeRole::Attn, 0));
        saes.add(bindSae(sae("resid_delta_attn.relu.pt"), c, SaeRole::Resid, 0, SaeLocation::ResidPost));
        saes.add(bindSae(sae("mlp_post_act.relu.pt"), c, SaeRole::Mlp, 1));
        saes.add(bindSae(sae("resid_delta_attn.relu.pt"), c, SaeRole::Attn, 1));
        saes.add(bindSae(sae("resid_delta_attn.topk8.pt"), c, SaeRole::Resid, 1, SaeLocation::ResidPre));
    }

    ActivationRecord run(const std::vector<int>& ids, bool withGrad = false, bool exactSaeGraph = false) const
    {
        ForwardOptions o;
        o.withGrad = withGrad;
        o.exactSaeGraph = exactSaeGraph;
        o.saes = &saes;
        return runForward(*model, ids, o);
    }

    static std::vector<int> promptIds(int index)
    {
        std::ifstream in(dataDir() / "reference.json");
        return nlohmann::json::parse(in)["prompts"][index]["ids"].get<std::vector<int>>();
    }
};

// Layer norm with σ held fixed (math §4.3), for autograd checks.
inline at::Tensor layerNormDetached(const at::Tensor& x, const at::Tensor& g, const at::Tensor& b, double eps)
{
    const at::Tensor c = x - x.mean(-1, true);
    const at::Tensor sigma = (c.pow(2).mean(-1, true) + eps).sqrt().detach();
    return c / sigma * g + b;
}

} // namespace cs::test
