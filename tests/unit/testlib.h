/*
 * testlib.h - the smallest test harness that does the job: CHECK macros that count and report
 * failures with file:line, and TEST_MAIN_END() that prints "N passed, M failed" and sets the
 * exit status. Each test binary is one file; include the module's .c directly when a test needs
 * its static functions (h2o style).
 */
#ifndef CLOOB_TESTLIB_H
#define CLOOB_TESTLIB_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int tl_passed, tl_failed;

#define CHECK(cond)                                                                    \
    do {                                                                               \
        if (cond) {                                                                    \
            tl_passed++;                                                               \
        } else {                                                                       \
            tl_failed++;                                                               \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);   \
        }                                                                              \
    } while (0)

#define CHECK_MSG(cond, ...)                                                           \
    do {                                                                               \
        if (cond) {                                                                    \
            tl_passed++;                                                               \
        } else {                                                                       \
            tl_failed++;                                                               \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond);   \
            fprintf(stderr, __VA_ARGS__);                                              \
            fputc('\n', stderr);                                                       \
        }                                                                              \
    } while (0)

#define CHECK_EQ_INT(a, b) CHECK_MSG((long long)(a) == (long long)(b), "%lld != %lld", \
                                     (long long)(a), (long long)(b))
#define CHECK_STR(a, b) CHECK_MSG(strcmp((a), (b)) == 0, "\"%s\" != \"%s\"", (a), (b))
#define CHECK_NEAR(a, b, tol) CHECK_MSG(fabs((double)(a) - (double)(b)) <= (tol), "%g vs %g", \
                                        (double)(a), (double)(b))

#define TEST_MAIN_END()                                                                \
    do {                                                                               \
        printf("%d passed, %d failed\n", tl_passed, tl_failed);                        \
        if (tl_passed + tl_failed == 0) fprintf(stderr, "no CHECK ran\n");            \
        return (tl_failed || tl_passed + tl_failed == 0) ? 1 : 0;                      \
    } while (0)

#endif
