/* team.c -- a fixed team of worker threads for the forward pass's
 * data-parallel phases (ggml's static split by ith/nth).
 *
 * DESIGN: team_run publishes (fn, arg) and bumps a generation counter; each
 * worker spins briefly on the counter, then sleeps on a condvar, runs its
 * share, and decrements `pending`; the caller runs share 0 and waits for
 * pending to reach 0. The brief spin keeps the ~10 calls per layer cheap;
 * the condvar keeps idle workers off the CPU between requests.
 */
#include "engine/engine_impl.h"

#include <pthread.h>
#include <stdatomic.h>

#define POOL_SPIN 20000

struct eng_team {
    int n_threads;
    pthread_t *threads;
    pthread_mutex_t mu; /* guards the condvar waits below */
    pthread_cond_t start_cv, done_cv;
    atomic_uint generation;
    atomic_int pending;
    atomic_bool stop;
    void (*fn)(void *, int, int);
    void *arg;
};

struct worker_arg {
    struct eng_team *p;
    int ith;
};

static void *worker_main(void *varg) {
    struct worker_arg wa = *(struct worker_arg *)varg;
    free(varg);
    struct eng_team *p = wa.p;
    unsigned seen = 0;
    for (;;) {
        unsigned g;
        int spins = 0;
        while ((g = atomic_load(&p->generation)) == seen && !atomic_load(&p->stop)) {
            if (++spins < POOL_SPIN) continue;
            pthread_mutex_lock(&p->mu);
            while (atomic_load(&p->generation) == seen && !atomic_load(&p->stop))
                pthread_cond_wait(&p->start_cv, &p->mu);
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->stop)) return NULL;
        seen = g;
        p->fn(p->arg, wa.ith, p->n_threads);
        if (atomic_fetch_sub(&p->pending, 1) == 1) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done_cv);
            pthread_mutex_unlock(&p->mu);
        }
    }
}

struct eng_team *team_new(int n_threads) {
    struct eng_team *p = calloc(1, sizeof(*p));
    if (!p) return NULL;
    p->n_threads = n_threads < 1 ? 1 : n_threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->start_cv, NULL);
    pthread_cond_init(&p->done_cv, NULL);
    p->threads = calloc((size_t)p->n_threads, sizeof(pthread_t));
    if (!p->threads) goto fail;
    for (int i = 1; i < p->n_threads; i++) {
        struct worker_arg *wa = malloc(sizeof(*wa));
        if (!wa) goto fail;
        wa->p = p;
        wa->ith = i;
        if (pthread_create(&p->threads[i], NULL, worker_main, wa) != 0) {
            free(wa);
            p->n_threads = i; /* join only those started */
            goto fail;
        }
    }
    return p;
fail:
    team_free(p);
    return NULL;
}

void team_free(struct eng_team *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, true);
    pthread_cond_broadcast(&p->start_cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; p->threads && i < p->n_threads; i++)
        pthread_join(p->threads[i], NULL);
    free(p->threads);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->start_cv);
    pthread_cond_destroy(&p->done_cv);
    free(p);
}

int team_n_threads(const struct eng_team *p) {
    return p->n_threads;
}

void team_run(struct eng_team *p, void (*fn)(void *arg, int ith, int nth), void *arg) {
    if (p->n_threads == 1) {
        fn(arg, 0, 1);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    atomic_store(&p->pending, p->n_threads - 1);
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add(&p->generation, 1);
    pthread_cond_broadcast(&p->start_cv);
    pthread_mutex_unlock(&p->mu);
    fn(arg, 0, p->n_threads);
    int spins = 0;
    while (atomic_load(&p->pending) > 0) {
        if (++spins < POOL_SPIN) continue;
        pthread_mutex_lock(&p->mu);
        while (atomic_load(&p->pending) > 0)
            pthread_cond_wait(&p->done_cv, &p->mu);
        pthread_mutex_unlock(&p->mu);
    }
}
