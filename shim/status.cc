/*
 * status.cc - status names and the error-buffer writer shared by the whole shim. Compiled
 * without libtorch (see the Makefile) so the tokenizer can use it on its own.
 */
#include <cstdarg>
#include <cstdio>
#include <cstring>

#include "cloob.h"
#include "shim_internal.h"

extern "C" const char *cloob_status_name(cloob_status s) noexcept {
    switch (s) {
    case CLOOB_OK: return "ok";
    case CLOOB_ERR_INVALID_ARGUMENT: return "invalid_argument";
    case CLOOB_ERR_IO: return "io";
    case CLOOB_ERR_MODEL: return "model";
    case CLOOB_ERR_OUT_OF_MEMORY: return "out_of_memory";
    case CLOOB_ERR_DEVICE: return "device";
    case CLOOB_ERR_INTERNAL: return "internal";
    }
    return "unknown";
}

extern "C" void cloob_set_error(char *err, size_t errlen, const char *fmt, ...) noexcept {
    if (err == nullptr || errlen == 0) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    if (n < 0) {
        err[0] = '\0';
        return;
    }
    err[errlen - 1] = '\0';
    if ((size_t)n >= errlen) {
        /* Truncated: drop a trailing partial UTF-8 sequence so the text stays valid UTF-8
         * (messages quote file names and JSON keys, which may be non-ASCII). */
        size_t end = strlen(err);
        size_t i = end;
        while (i > 0 && ((unsigned char)err[i - 1] & 0xC0) == 0x80) {
            i--;
        }
        if (i > 0 && ((unsigned char)err[i - 1] & 0x80)) {
            unsigned char lead = (unsigned char)err[i - 1];
            size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
            if (end - (i - 1) < need) {
                err[i - 1] = '\0';
            }
        }
    }
}
