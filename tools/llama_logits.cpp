// Dumps llama.cpp's per-position logits for prompts, as the independent oracle of rocmforge's
// parity tests. Built and run by tools/gen_parity_goldens.sh against a CPU build of llama.cpp.
//
// usage: llama_logits MODEL PROMPTS_FILE OUT_JSON
// PROMPTS_FILE: one prompt per line. For every position the JSON holds the top 32 (id, logit)
// pairs and the logits of every `stride`-th vocabulary id (a sample of the whole distribution).
#include "llama.h"
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <numeric>
#include <string>
#include <vector>

int main(int argc, char ** argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s MODEL PROMPTS_FILE OUT_JSON\n", argv[0]);
        return 2;
    }
    llama_backend_init();
    llama_model_params mp = llama_model_default_params();
    llama_model * model = llama_model_load_from_file(argv[1], mp);
    if (!model) { fprintf(stderr, "cannot load %s\n", argv[1]); return 1; }
    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = 512;
    cp.n_batch = 512;
    cp.n_ubatch = 512;
    cp.n_threads = 2;
    cp.n_threads_batch = 2;
    // f32 cache: rocmforge's CPU reference keeps f32 K/V, so the cache adds no rounding gap.
    cp.type_k = GGML_TYPE_F32;
    cp.type_v = GGML_TYPE_F32;
    cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    llama_context * ctx = llama_init_from_model(model, cp);
    if (!ctx) { fprintf(stderr, "cannot create context\n"); return 1; }
    const llama_vocab * vocab = llama_model_get_vocab(model);
    const int n_vocab = llama_vocab_n_tokens(vocab);
    const int stride = std::max(1, n_vocab / 128);
    const int top_k = 32;

    std::ifstream in(argv[2]);
    FILE * out = fopen(argv[3], "w");
    fprintf(out, "{\"n_vocab\": %d, \"stride\": %d, \"prompts\": [\n", n_vocab, stride);
    std::string line;
    bool first_prompt = true;
    while (std::getline(in, line)) {
        if (line.empty()) continue;
        std::vector<llama_token> toks(line.size() + 16);
        int n = llama_tokenize(vocab, line.c_str(), line.size(), toks.data(), toks.size(), true, true);
        if (n < 0) { fprintf(stderr, "tokenize failed\n"); return 1; }
        toks.resize(n);
        llama_memory_clear(llama_get_memory(ctx), true);
        llama_batch batch = llama_batch_init(n, 0, 1);
        for (int i = 0; i < n; i++) {
            batch.token[i] = toks[i];
            batch.pos[i] = i;
            batch.n_seq_id[i] = 1;
            batch.seq_id[i][0] = 0;
            batch.logits[i] = 1;
        }
        batch.n_tokens = n;
        if (llama_decode(ctx, batch) != 0) { fprintf(stderr, "decode failed\n"); return 1; }
        fprintf(out, "%s{\"tokens\": [", first_prompt ? "" : ",\n");
        first_prompt = false;
        for (int i = 0; i < n; i++) fprintf(out, "%s%d", i ? "," : "", toks[i]);
        fprintf(out, "], \"positions\": [");
        std::vector<int> idx(n_vocab);
        for (int i = 0; i < n; i++) {
            const float * lg = llama_get_logits_ith(ctx, i);
            std::iota(idx.begin(), idx.end(), 0);
            std::partial_sort(idx.begin(), idx.begin() + top_k, idx.end(),
                              [&](int a, int b) { return lg[a] > lg[b] || (lg[a] == lg[b] && a < b); });
            fprintf(out, "%s{\"top\": [", i ? ",\n" : "\n");
            for (int k = 0; k < top_k; k++) fprintf(out, "%s[%d,%.6g]", k ? "," : "", idx[k], lg[idx[k]]);
            fprintf(out, "], \"sample\": [");
            for (int v = 0, k = 0; v < n_vocab; v += stride, k++) fprintf(out, "%s%.6g", k ? "," : "", lg[v]);
            fprintf(out, "]}");
        }
        fprintf(out, "]}");
        llama_batch_free(batch);
    }
    fprintf(out, "\n]}\n");
    fclose(out);
    llama_free(ctx);
    llama_model_free(model);
    return 0;
}
