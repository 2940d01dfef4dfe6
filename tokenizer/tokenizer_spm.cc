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

// Chunked tokenisation (tok_encode_prefix). A cut is made only before an
// ASCII space, where the normaliser makes a word boundary: with the
// whitespace handling that probe_chunkable checks, the text on each side
// normalises to the same marker-initial words as inside the whole text, and
// since no piece contains a non-initial word marker, every segmentation of
// the whole text breaks there, so the best one is the concatenation of the
// best ones on each side. A run of CHUNK bytes without a space is extended
// to the next space; a run longer than LONG_RUN can only be cut inside a word,
// where the end of the text can change the segmentation before it. There a
// prefix of the run is tokenised twice, cut at two points DELTA bytes apart,
// and the ids are kept only if both agree on every id needed (a cut's effect
// does not reach back DELTA bytes in practice); otherwise the prefix doubles,
// up to the whole run (tokenised in one go, exactly).
static const size_t CHUNK = 64 * 1024, LONG_RUN = 256 * 1024, DELTA = 4096;

// Back to a UTF-8 character start (never below lo).
static size_t utf8_start(const char *s, size_t i, size_t lo) {
    while (i > lo && ((unsigned char)s[i] & 0xC0) == 0x80)
        i--;
    return i;
}

static int encode_chunk(const tok_spm *t, const std::string &head, const char *s, size_t len,
                        std::vector<int> &out) {
    if (head.empty()) return encode_pieces(t, s, len, out);
    std::string buf = head;
    buf.append(s, len);
    return encode_pieces(t, buf.data(), buf.size(), out);
}

// A long space-free run text[0..run): the first `need` ids of head + run, or
// fewer when the run has fewer (then exactly all of them). 0 or -1.
static int encode_long_run(const tok_spm *t, const std::string &head, const char *s, size_t run,
                           size_t need, std::vector<int> &out) {
    size_t k = utf8_start(s, CHUNK, 1);
    while (k + DELTA < run) {
        std::vector<int> a, b;
        if (encode_chunk(t, head, s, k, a)) return -1;
        if (a.size() > need + 64) {
            size_t k2 = utf8_start(s, k + DELTA, k);
            if (encode_chunk(t, head, s, k2, b)) return -1;
            if (b.size() >= need && std::equal(a.begin(), a.begin() + (long)need, b.begin())) {
                out.assign(a.begin(), a.begin() + (long)need);
                return 0;
            }
        }
        // the run's end is a character boundary (a space or the end of the
        // text) and s[run] may lie past the buffer: only a cut inside the
        // run is moved back to a character start
        k = k * 2 < run ? utf8_start(s, k * 2, 1) : run;
    }
    return encode_chunk(t, head, s, run, out);
}

// Appends ids to a malloc'ed array grown geometrically with realloc (big
// arrays are mmap'ed, so growing them moves pages instead of copying).
struct id_buf {
    int32_t *p = nullptr;
    size_t n = 0, cap = 0;
    bool push(int32_t id) {
        if (n == cap) {
            size_t c = cap ? cap * 2 : 1024;
            int32_t *q = (int32_t *)realloc(p, sizeof(int32_t) * c);
            if (!q) return false;
            p = q, cap = c;
        }
        p[n++] = id;
        return true;
    }
};

extern "C" int32_t tok_spm_encode_prefix(const tok_spm *t, const char *head, size_t hlen,
                                         const char *text, size_t len, int32_t max_ids,
                                         int32_t **out, bool *more) {
    *out = nullptr;
    *more = false;
    if (max_ids < 0) return TOK_EFAIL;
    id_buf ids;
    try {
        std::vector<int> v;
        std::string h(head, hlen);
        size_t pos = 0, lim = (size_t)max_ids;
        for (bool first = true; (first || pos < len) && ids.n <= lim; first = false) {
            size_t end = len, need = lim + 1 - ids.n;
            bool long_run = false;
            if (t->chunkable && len - pos > CHUNK) {
                const char *lo = text + pos + CHUNK / 2;
                const void *sp = memrchr(lo, ' ', CHUNK / 2);
                if (sp) {
                    end = (size_t)((const char *)sp - text);
                } else {
                    sp = memchr(text + pos + CHUNK, ' ', len - pos - CHUNK);
                    end = sp ? (size_t)((const char *)sp - text) : len;
                    long_run = end - pos > LONG_RUN && need < end - pos;
                }
            }
            v.clear();
            int rc = long_run ? encode_long_run(t, h, text + pos, end - pos, need, v)
                              : encode_chunk(t, h, text + pos, end - pos, v);
            if (rc) throw std::bad_alloc();
            for (size_t i = 0; i < v.size() && ids.n <= lim; i++)
                if (!ids.push(map_id(v[i]))) throw std::bad_alloc();
            h.clear();
            pos = end;
        }
    } catch (...) {
        free(ids.p);
        return TOK_EFAIL;
    }
    if (ids.n > (size_t)max_ids) {
        *more = true;
        ids.n = (size_t)max_ids;
    }
    if (ids.n == 0 || ids.n > INT32_MAX) {
        free(ids.p);
        return ids.n ? TOK_EFAIL : 0;
    }
    *out = ids.p;
    return (int32_t)ids.n;
}

extern "C" const char *tok_spm_piece(const tok_spm *t, int32_t id) {
    static const char *fixed[] = {"<s>", "<pad>", "</s>", "<unk>"};
    if (id >= 0 && id < 4) return fixed[id];
    if (id == t->n_pieces + 1) return "<mask>";
    if (id < 4 || id > t->n_pieces) return "";
    return t->sp.IdToPiece(id - 1).c_str();
}
