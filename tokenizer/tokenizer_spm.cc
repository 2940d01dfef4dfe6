// tokenizer_spm.cc -- the only C++ file: wraps libsentencepiece behind tokenizer.h
// (reached through tokenizer.c for a directory with sentencepiece.bpe.model).
//
// Id mapping (transformers' XLMRobertaTokenizer, fairseq_offset = 1):
//   spm 0 (<unk>) -> 3; spm 1 (<s>) -> 0; spm 2 (</s>) -> 2; spm i >= 3 -> i + 1;
//   <pad> = 1 and <mask> = n_pieces + 1 have no sentencepiece piece.
// Thread-safety: SentencePieceProcessor::Encode is const and safe to call from
// many threads after Load (google/sentencepiece#207, #657).

#include "tokenizer/tokenizer.h"
#include "tokenizer/tok_impl.h"

#include <sentencepiece_processor.h>

#include <algorithm>
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

struct tok_spm {
    sentencepiece::SentencePieceProcessor sp;
    int32_t n_pieces;
    bool chunkable; // text may be cut before an ASCII space (see tok_encode_prefix)
};

static int32_t map_id(int spm_id) {
    switch (spm_id) {
    case 0: return TOK_UNK;
    case 1: return TOK_BOS;
    case 2: return TOK_EOS;
    default: return spm_id + 1;
    }
}

static int encode_pieces(const tok_spm *t, const char *text, size_t len, std::vector<int> &out);

// Whether tokens(a + " " + b) == tokens(a) ++ tokens(" " + b) for this model:
// true when its normaliser removes extra whitespace (so a chunk's trailing
// and leading spaces vanish) and adds the word marker to a chunk that starts
// with a space exactly as the space itself becomes one in the whole text,
// and no piece spans a word marker (pieces only start with it). Probed on a
// few strings rather than read from the model proto, whose header Debian
// does not ship.
static bool probe_chunkable(const tok_spm *t) {
    static const char *const cuts[][2] = {
        {"ab", " cd"}, {"ab", "  cd"}, {"ab ", " cd"}, {"the", " quick brown"}, {"x.", " y"}};
    for (const auto &c : cuts) {
        std::string whole = std::string(c[0]) + c[1];
        std::vector<int> w, a, b;
        if (encode_pieces(t, whole.data(), whole.size(), w) ||
            encode_pieces(t, c[0], strlen(c[0]), a) || encode_pieces(t, c[1], strlen(c[1]), b))
            return false;
        a.insert(a.end(), b.begin(), b.end());
        if (a != w) return false;
    }
    return true;
}

extern "C" tok_spm *tok_spm_open(const char *path, char *err, size_t errlen) {
    tok_spm *t = new (std::nothrow) tok_spm;
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
    if (!S_ISREG(sb.st_mode) || sb.st_size > TOK_FILE_MAX_BYTES) {
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
    t->chunkable = probe_chunkable(t);
    return t;
}

extern "C" void tok_spm_close(tok_spm *t) {
    delete t;
}

extern "C" int32_t tok_spm_n_vocab(const tok_spm *t) {
    return t->n_pieces + 2;
}

static int encode_pieces(const tok_spm *t, const char *text, size_t len, std::vector<int> &out) {
    try {
        auto st = t->sp.Encode(absl::string_view(text, len), &out);
        return st.ok() ? 0 : -1;
    } catch (...) {
        return -1;
    }
}

extern "C" int32_t tok_spm_encode(const tok_spm *t, const char *text, size_t len, int32_t *ids,
                                  int32_t n_max) {
    std::vector<int> v;
    if (encode_pieces(t, text, len, v) != 0 || v.size() > INT32_MAX) return TOK_EFAIL;
    int32_t n = (int32_t)v.size();
    if (n > n_max) return -n;
    for (int32_t i = 0; i < n; i++)
        ids[i] = map_id(v[i]);
    return n;
}

extern "C" int32_t tok_spm_encode_alloc(const tok_spm *t, const char *text, size_t len,
                                        int32_t **out) {
    *out = nullptr;
    std::vector<int> v;
    if (encode_pieces(t, text, len, v) != 0 || v.size() > INT32_MAX) return TOK_EFAIL;
    int32_t n = (int32_t)v.size();
    if (n == 0) return 0;
    int32_t *ids = (int32_t *)malloc(sizeof(int32_t) * (size_t)n);
    if (!ids) return TOK_EFAIL;
    for (int32_t i = 0; i < n; i++)
        ids[i] = map_id(v[i]);
    *out = ids;
    return n;
}

// Chunked tokenisation (tok_encode_prefix, through tok_encode_chunked). A
// cut is made only before an ASCII space, where the normaliser makes a word
// boundary: with the whitespace handling that probe_chunkable checks, the
// text on each side normalises to the same marker-initial words as inside
// the whole text, and since no piece contains a non-initial word marker,
// every segmentation of the whole text breaks there, so the best one is the
// concatenation of the best ones on each side.
static bool spm_cut(const char *s, size_t i, size_t) {
    return s[i] == ' ';
}

static bool spm_encode(const void *impl, const char *s, size_t n, struct tok_ids *out) {
    try {
        std::vector<int> v;
        if (encode_pieces(static_cast<const tok_spm *>(impl), s, n, v)) return false;
        for (int id : v)
            if (!tok_ids_push(out, map_id(id))) return false;
        return true;
    } catch (...) { // no exception crosses back into C
        return false;
    }
}

extern "C" int32_t tok_spm_encode_prefix(const tok_spm *t, const char *head, size_t hlen,
                                         const char *text, size_t len, int32_t max_ids,
                                         int32_t **out, bool *more) {
    return tok_encode_chunked(t, spm_encode, t->chunkable ? spm_cut : nullptr, head, hlen, text,
                              len, max_ids, out, more);
}

extern "C" const char *tok_spm_piece(const tok_spm *t, int32_t id) {
    static const char *fixed[] = {"<s>", "<pad>", "</s>", "<unk>"};
    if (id >= 0 && id < 4) return fixed[id];
    if (id == t->n_pieces + 1) return "<mask>";
    if (id < 4 || id > t->n_pieces) return "";
    return t->sp.IdToPiece(id - 1).c_str();
}
