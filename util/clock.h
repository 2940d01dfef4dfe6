/* clock.h -- the project's clock: monotonic seconds for timings and timeouts.
 *
 * Ownership: nothing allocated. Thread-safety: thread-safe (no state).
 */
#ifndef EMB_UTIL_CLOCK_H
#define EMB_UTIL_CLOCK_H

/* Seconds on CLOCK_MONOTONIC (arbitrary origin; only differences mean anything). */
double clock_now(void);

#endif
