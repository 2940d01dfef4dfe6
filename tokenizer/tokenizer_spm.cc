// tokenizer_spm.cc -- the only C++ file: wraps libsentencepiece behind tokenizer.h.
//
// Id mapping (transformers' XLMRobertaTokenizer, fairseq_offset = 1):
//   spm 0 (<unk>) -> 3; spm 1 (<s>) -> 0; spm 2 (</s>) -> 2; spm i >= 3 -> i + 1;
//   <pad> = 1 and <mask> = n_pieces + 1 have no sentencepiece piece.
// Thread-safety: SentencePieceProcessor::Encode is const and safe to call from
// many threads after Load (google/sentencepiece#207, #657).

#include "tokenizer/tokenizer.h"

#include <sentencepiece_processor.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

// The largest tokenizer file accepted (XLM-R's is 5 MB).
#define TOK_MODEL_MAX_BYTES (64L << 20)

struct tok {
    sentencepiece::SentencePieceProcessor sp;
    int32_t n_pieces;
};

static int32_t map_id(int spm_id) {
    switch (spm_id) {
    case 0: return TOK_UNK;
    case 1: return TOK_BOS;
    case 2: return TOK_EOS;
    default: return spm_id + 1;
    }
}

extern "C" tok *tok_open(const char *path, char *err, size_t errlen) {
    tok *t = new (std::nothrow) tok;
    if (!t) {
        snprintf(err, errlen, "%s: out of memory", path);
        return nullptr;
    }
    // A regular file of bounded size: a FIFO would block the load and
    // /dev/urandom grow memory without end.
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) != 0) {
        snprintf(err, errlen, "%s: cannot open tokenizer model (%s)", path, strerror(errno));
        if (fd >= 0) close(fd);
        delete t;
        return nullptr;
    }
    close(fd);
    if (!S_ISREG(sb.st_mode) || sb.st_size > TOK_MODEL_MAX_BYTES) {
        snprintf(err, errlen, "%s: sentencepiece model %s", path,
                 S_ISREG(sb.st_mode) ? "larger than 64 MiB" : "is not a regular file");
        delete t;
        return nullptr;
    }
    auto st = t->sp.Load(path);
    if (!st.ok()) {
        snprintf(err, errlen, "%s: not a sentencepiece model: %s", path, st.ToString().c_str());
        delete t;
        return nullptr;
    }
    t->n_pieces = t->sp.GetPieceSize();
    // XLM-R's layout needs <unk>, <s>, </s> at spm ids 0, 1, 2.
    if (t->n_pieces < 4 || !t->sp.IsUnknown(0) || !t->sp.IsControl(1) || !t->sp.IsControl(2)) {
        snprintf(err, errlen,
                 "%s: sentencepiece model does not have the XLM-R layout "
                 "(<unk>, <s>, </s> at ids 0, 1, 2)",
                 path);
        delete t;
        return nullptr;
    }
    return t;
}

extern "C" tok *tok_open_dir(const char *dir, char *err, size_t errlen) {
    std::string path = std::string(dir) + "/" TOK_MODEL_FILE;
    return tok_open(path.c_str(), err, errlen);
}

extern "C" int32_t tok_bos(const tok *) {
    return TOK_BOS;
}

extern "C" int32_t tok_eos(const tok *) {
    return TOK_EOS;
}

extern "C" void tok_close(tok *t) {
    delete t;
}

extern "C" int32_t tok_n_vocab(const tok *t) {
    return t->n_pieces + 2;
}

static int encode_pieces(const tok *t, const char *text, size_t len, std::vector<int> &out) {
    try {
        auto st = t->sp.Encode(absl::string_view(text, len), &out);
        return st.ok() ? 0 : -1;
    } catch (...) {
        return -1;
    }
}

extern "C" int32_t tok_encode(const tok *t, const char *text, size_t len, int32_t *ids,
                              int32_t n_max) {
    std::vector<int> v;
    if (encode_pieces(t, text, len, v) != 0 || v.size() > INT32_MAX) return TOK_EFAIL;
    int32_t n = (int32_t)v.size();
    if (n > n_max) return -n;
    for (int32_t i = 0; i < n; i++) ids[i] = map_id(v[i]);
    return n;
}

extern "C" int32_t tok_encode_alloc(const tok *t, const char *text, size_t len, int32_t **out) {
    *out = nullptr;
    std::vector<int> v;
    if (encode_pieces(t, text, len, v) != 0 || v.size() > INT32_MAX) return TOK_EFAIL;
    int32_t n = (int32_t)v.size();
    if (n == 0) return 0;
    int32_t *ids = (int32_t *)malloc(sizeof(int32_t) * (size_t)n);
    if (!ids) return TOK_EFAIL;
    for (int32_t i = 0; i < n; i++) ids[i] = map_id(v[i]);
    *out = ids;
    return n;
}

extern "C" const char *tok_piece(const tok *t, int32_t id) {
    static const char *fixed[] = {"<s>", "<pad>", "</s>", "<unk>"};
    if (id >= 0 && id < 4) return fixed[id];
    if (id == t->n_pieces + 1) return "<mask>";
    if (id < 4 || id > t->n_pieces) return "";
    return t->sp.IdToPiece(id - 1).c_str();
}
